package vault

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
	"github.com/nats-io/nkeys"
)

// Fixed curve keys of the fuzz targets, so that the genuine seals in
// testdata/fuzz stay openable. They protect nothing.
const (
	fuzzWorkerSeed    = "SXAILK3P3FRFVP5HKVD46BBXOIGPEE7L4D63UYLD5FYGZ2B4NFVV5BV44I"
	fuzzRequesterSeed = "SXAGAHNDKTOHKMWNGGVT4QIMKVQL7P2GW7YEJA4HNZ6FMPJAQ3IJL34GBQ"
)

// fuzzPasswords are the passwords sealed in the seed corpora. No error
// message may ever contain one.
var fuzzPasswords = []string{
	"Fuzz-Seed-Password-0123456789",
	`back\slash-and-$pecial-chars-!#%&()*+,-./:;<=>?@[]^_{|}~`,
	"",
}

// fuzzKeys returns the fixed worker and requester key pairs.
func fuzzKeys(t testing.TB) (worker *Keys, requester nkeys.KeyPair) {
	t.Helper()
	wkp, err := nkeys.FromCurveSeed([]byte(fuzzWorkerSeed))
	if err != nil {
		t.Fatal(err)
	}
	worker, err = newKeys(wkp)
	if err != nil {
		t.Fatal(err)
	}
	requester, err = nkeys.FromCurveSeed([]byte(fuzzRequesterSeed))
	if err != nil {
		t.Fatal(err)
	}
	return worker, requester
}

// checkOpened holds one outcome of an opener to its contract: a password
// comes back only when the bytes authenticate as sealed by sender to the
// opener's key (checked again here with nkeys directly) and hold exactly
// {"job_id": jobID, "password": pw}; every failure wraps ErrSeal or
// ErrSealJobID and quotes no password.
func checkOpened(t *testing.T, opener nkeys.KeyPair, raw []byte, sender, jobID, pw string, err error) {
	t.Helper()
	if err != nil {
		if !errors.Is(err, wire.ErrSeal) && !errors.Is(err, wire.ErrSealJobID) {
			t.Fatalf("error %v wraps neither ErrSeal nor ErrSealJobID", err)
		}
		for _, p := range fuzzPasswords {
			if p != "" && strings.Contains(err.Error(), p) {
				t.Fatalf("error %q quotes a sealed password", err)
			}
		}
		if pw != "" {
			t.Fatalf("a password came back with error %v", err)
		}
		return
	}
	plain, oerr := opener.Open(raw, sender)
	if oerr != nil {
		t.Fatalf("opened %d bytes that nkeys does not authenticate from %q: %v", len(raw), sender, oerr)
	}
	var p struct {
		JobID    *string `json:"job_id"`
		Password *string `json:"password"`
	}
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	if derr := dec.Decode(&p); derr != nil || dec.More() || p.JobID == nil || p.Password == nil {
		t.Fatalf("accepted a payload that is not {\"job_id\",\"password\"}: %v", derr)
	}
	if *p.JobID != jobID {
		t.Fatalf("accepted a seal of job %q for job %q", *p.JobID, jobID)
	}
	if *p.Password != pw {
		t.Fatal("returned a password other than the sealed one")
	}
}

// FuzzOpenPassword feeds the worker's opener of chosen passwords (a job's
// "password" field) arbitrary text: it never panics and returns a password
// only for a genuine seal from sender for jobID.
func FuzzOpenPassword(f *testing.F) {
	worker, requester := fuzzKeys(f)
	rpub, _ := requester.PublicKey()
	sealed, err := wire.SealChosenPassword(requester, worker.PublicKey(), "job-1", secret.New(fuzzPasswords[0]))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed, rpub, "job-1")
	f.Add(sealed, rpub, "job-2")
	f.Add(sealed, worker.PublicKey(), "job-1")
	f.Add("", rpub, "job-1")
	f.Add("not base64!", rpub, "job-1")
	f.Fuzz(func(t *testing.T, sealed, sender, jobID string) {
		pw, err := worker.OpenPassword(secret.New(sealed), sender, jobID)
		raw, _ := base64.StdEncoding.DecodeString(sealed)
		checkOpened(t, worker.kp, raw, sender, jobID, pw.Reveal(), err)
	})
}

// FuzzOpenGeneratedPassword does the same for the requester's opener of a
// generated password read from the vault (raw bytes).
func FuzzOpenGeneratedPassword(f *testing.F) {
	worker, requester := fuzzKeys(f)
	rpub, _ := requester.PublicKey()
	sealed, err := worker.SealPassword("job-1", secret.New(fuzzPasswords[0]), rpub)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sealed, worker.PublicKey(), "job-1")
	f.Add(sealed, worker.PublicKey(), "job-2")
	f.Add(sealed, rpub, "job-1")
	f.Add([]byte{}, worker.PublicKey(), "job-1")
	f.Fuzz(func(t *testing.T, sealed []byte, sender, jobID string) {
		pw, err := wire.OpenGeneratedPassword(requester, sender, sealed, jobID)
		checkOpened(t, requester, sealed, sender, jobID, pw.Reveal(), err)
	})
}
