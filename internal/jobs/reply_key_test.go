package jobs

import (
	"crypto/ecdh"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/wire"
)

// TestSmallOrderPointsAreSmallOrder: every listed point gives X25519's
// all-zero secret with any private key (crypto/ecdh refuses it), so the
// list holds no ordinary key; an ordinary key passes.
func TestSmallOrderPointsAreSmallOrder(t *testing.T) {
	t.Parallel()
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// libsodium's list: u = 0, 1, the two points of order 8, p-1, p, p+1.
	distinct := map[[32]byte]bool{}
	for _, pt := range smallOrderPoints {
		distinct[pt] = true
	}
	if len(distinct) != 7 {
		t.Fatalf("%d distinct small-order points listed, want 7", len(distinct))
	}
	for i, pt := range smallOrderPoints {
		for _, top := range []byte{0, 0x80} {
			raw := pt
			raw[31] |= top
			pub, err := ecdh.X25519().NewPublicKey(raw[:])
			if err != nil {
				t.Fatal(err)
			}
			if _, err := priv.ECDH(pub); err == nil {
				t.Fatalf("point %d (top bit %#x) gives a usable shared secret: not of small order", i, top)
			}
			enc, err := nkeys.Encode(nkeys.PrefixByteCurve, raw[:])
			if err != nil {
				t.Fatal(err)
			}
			if raw, ok := decodeReplyKey(string(enc)); !ok || !smallOrder(raw) {
				t.Fatalf("point %d (top bit %#x) not recognised", i, top)
			}
		}
	}
	kp, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	if raw, ok := decodeReplyKey(pub); !ok || smallOrder(raw) {
		t.Fatal("an ordinary key is taken for a point of small order")
	}
}

// TestParseRefusesSmallOrderReplyKey: a job whose reply_key is of small
// order is invalid_job, for every op that seals a password.
func TestParseRefusesSmallOrderReplyKey(t *testing.T) {
	t.Parallel()
	enc, err := nkeys.Encode(nkeys.PrefixByteCurve, make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"create", "reset_password"} {
		body := `{"id":"j-1","username":"good_user","reply_key":"` + string(enc) + `"}`
		_, jerr := Parse("dbusers", "dbusers.jobs.app.user."+op, "", []byte(body))
		if jerr == nil || jerr.Code != wire.CodeInvalidJob || !strings.Contains(jerr.Message, "small order") {
			t.Fatalf("%s: %v, want invalid_job naming the small order", op, jerr)
		}
	}
}
