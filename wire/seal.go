package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/dbusers/dbusers/secret"
	"github.com/nats-io/nkeys"
)

// ErrSeal is wrapped by every failure to open a sealed password: bad base64,
// a seal that does not open with the given keys, or a payload that is not
// the expected JSON object.
var ErrSeal = errors.New("sealed password does not open")

// ErrSealJobID is wrapped when a seal opens but was made for another job:
// a sealed password replayed from another job must not be accepted.
var ErrSealJobID = errors.New("sealed password belongs to another job")

// SealChosenPassword is the requester's side of a chosen password: it
// returns the standard base64 of requester.Seal(json, workerPub), the value
// of a job's "password" field.
func SealChosenPassword(requester nkeys.KeyPair, workerPub, jobID string, password secret.Secret) (string, error) {
	b, err := Seal(requester.Seal, jobID, password, workerPub)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// OpenGeneratedPassword is the requester's side of a generated password: it
// opens the bytes read from the vault bucket with workerPub as the sender and
// checks they were sealed for jobID. Errors wrap ErrSeal or ErrSealJobID.
func OpenGeneratedPassword(requester nkeys.KeyPair, workerPub string, sealed []byte, jobID string) (secret.Secret, error) {
	return Open(requester, sealed, workerPub, jobID)
}

// payload is the sealed plaintext of contract §4. Pointers tell a missing
// field from an empty one.
type payload struct {
	JobID    *string `json:"job_id"`
	Password *string `json:"password"`
}

// SealFunc seals plain to a recipient's curve public key: an nkeys
// KeyPair's Seal, or the worker's sealing with cached shared keys.
type SealFunc func(plain []byte, recipientPub string) ([]byte, error)

// Seal seals {"job_id":jobID,"password":pw} to recipientPub with sealTo.
func Seal(sealTo SealFunc, jobID string, pw secret.Secret, recipientPub string) ([]byte, error) {
	password := pw.Reveal()
	if jobID == "" {
		return nil, errors.New("seal: empty job id")
	}
	// encoding/json would silently replace invalid UTF-8, changing the password.
	if !utf8.ValidString(password) {
		return nil, errors.New("seal: password is not valid UTF-8")
	}
	if !nkeys.IsValidPublicCurveKey(recipientPub) {
		return nil, errors.New("seal: recipient is not a curve public key")
	}
	plain, err := json.Marshal(payload{JobID: &jobID, Password: &password})
	if err != nil {
		return nil, fmt.Errorf("seal: encode: %w", err)
	}
	defer wipe(plain)
	out, err := sealTo(plain, recipientPub)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return out, nil
}

// Open opens a sealed {"job_id","password"} from senderPub with kp and
// checks it was sealed for jobID. Errors wrap ErrSeal or ErrSealJobID and
// never contain the password.
func Open(kp nkeys.KeyPair, sealed []byte, senderPub, jobID string) (secret.Secret, error) {
	if !nkeys.IsValidPublicCurveKey(senderPub) {
		return secret.Secret{}, fmt.Errorf("%w: sender is not a curve public key", ErrSeal)
	}
	plain, err := kp.Open(sealed, senderPub)
	if err != nil {
		// nkeys errors are fixed texts, safe to wrap.
		return secret.Secret{}, fmt.Errorf("%w: %w", ErrSeal, err)
	}
	defer wipe(plain)
	var p payload
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	// The decoder's error text can quote the plaintext, so it is dropped.
	if err := dec.Decode(&p); err != nil || dec.More() || p.JobID == nil || p.Password == nil {
		return secret.Secret{}, fmt.Errorf("%w: payload is not {\"job_id\",\"password\"}", ErrSeal)
	}
	if *p.JobID != jobID {
		return secret.Secret{}, fmt.Errorf("%w: want job %q", ErrSealJobID, jobID)
	}
	return secret.New(*p.Password), nil
}

// wipe zeroes a buffer that held a secret, so it does not linger in memory.
func wipe(b []byte) { clear(b) }

// VaultKey returns the vault key of a job's sealed password: "<target>.<jobID>".
func VaultKey(target, jobID string) string { return target + "." + jobID }
