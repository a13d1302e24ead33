package jobs

import (
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// Job is a decoded, validated job.
type Job struct {
	ID             string // the idempotency key
	Target         string // subject token
	Op             wire.Op
	Username       string        // "" for list
	ReadOnly       bool          // create only
	ReplyKey       string        // create and reset_password: the requester's curve public key
	SealedPassword secret.Secret // base64 sealed chosen password, empty when the worker must generate one
	After          string        // list cursor, "" for the first page
	Limit          int           // list page size; DefaultLimit when absent, 0 for other ops
	// KeepOldFor is a reset's keep_old_for: how long the password in
	// force before it keeps working; 0 when the old one stops at once.
	KeepOldFor time.Duration
	// ScheduledUntil is, on a discard the expiry watcher sent, the end
	// time of the schedule entry it was sent for (ScheduledDiscardHeader).
	ScheduledUntil time.Time
}

// field is one known body field, as a bit so that a set of them (seen, allowed)
// is one integer.
type field uint8

const (
	fieldID field = 1 << iota
	fieldUsername
	fieldReadOnly
	fieldReplyKey
	fieldPassword
	fieldAfter
	fieldLimit
	fieldKeepOldFor
)

// lookupField maps a body key to its field; 0 means unknown. A switch on
// string(b) does not allocate.
func lookupField(key []byte) field {
	switch string(key) {
	case "id":
		return fieldID
	case "username":
		return fieldUsername
	case "read_only":
		return fieldReadOnly
	case "reply_key":
		return fieldReplyKey
	case "password":
		return fieldPassword
	case "after":
		return fieldAfter
	case "limit":
		return fieldLimit
	case "keep_old_for":
		return fieldKeepOldFor
	}
	return 0
}

// opFields is the set of fields an op uses; any other known field is an error
// so that a misplaced field never passes unnoticed.
func opFields(op wire.Op) field {
	switch op {
	case wire.OpCreate:
		return fieldID | fieldUsername | fieldReadOnly | fieldReplyKey | fieldPassword
	case wire.OpResetPassword:
		return fieldID | fieldUsername | fieldReplyKey | fieldPassword | fieldKeepOldFor
	case wire.OpDelete, wire.OpDiscardOldPassword:
		return fieldID | fieldUsername
	case wire.OpList:
		return fieldID | fieldAfter | fieldLimit
	}
	return 0
}

// Parse decodes and validates one job from its subject, its Nats-Msg-Id header
// ("" when absent) and its body. prefix is the subject prefix (e.g. "dbusers").
//
// Checks run in the order contract §2–3 fixes: every invalid_job reason first
// (subject, then body syntax and fields, then id, header, required fields,
// reply_key, cursor), then invalid_username, then invalid_password for a
// present but empty password. Parse does not open the sealed password: the
// caller opens it, answers invalid_password when it does not open, and checks
// the opened password with CheckPassword.
//
// On error the returned Job holds only Target and Op, each filled when the
// subject allowed it: Target is "" when the target token is unusable, Op is ""
// when the op is unknown.
func Parse(prefix, subject, headerID string, body []byte) (Job, *wire.Error) {
	target, op, err := parseSubject(prefix, subject)
	if err != nil {
		return Job{Target: target, Op: op}, err
	}
	j := Job{Target: target, Op: op}
	seen, err := j.decodeBody(body)
	if err != nil {
		return Job{Target: target, Op: op}, err
	}
	if err := j.checkFields(headerID); err != nil {
		return Job{Target: target, Op: op}, err
	}
	if op != wire.OpList {
		if err := wire.CheckUsername(j.Username); err != nil {
			return Job{Target: target, Op: op}, err
		}
	}
	// An empty password would otherwise read as "generate one"; a requester
	// who sent the field meant to choose it.
	if seen&fieldPassword != 0 && j.SealedPassword.IsZero() {
		return Job{Target: target, Op: op}, wire.Errorf(wire.CodeInvalidPassword, "password is empty: omit the field to have one generated")
	}
	return j, nil
}

// parseSubject splits <prefix>.jobs.<target>.user.<op>.
func parseSubject(prefix, subject string) (string, wire.Op, *wire.Error) {
	rest, ok := strings.CutPrefix(subject, prefix)
	if ok {
		rest, ok = strings.CutPrefix(rest, ".jobs.")
	}
	if !ok {
		return "", "", wire.Errorf(wire.CodeInvalidJob, "subject %s is not under %s", wire.Quote(subject), wire.Quote(prefix+".jobs."))
	}
	target, opToken, hasOp := strings.Cut(rest, ".")
	if !validTarget(target) {
		return "", "", wire.Errorf(wire.CodeInvalidJob, "target token %s is outside the grammar ^[a-z0-9][a-z0-9_-]{0,62}$", wire.Quote(target))
	}
	if !hasOp {
		return target, "", wire.Errorf(wire.CodeInvalidJob, "subject %s names no op", wire.Quote(subject))
	}
	switch op := wire.Op(opToken); op {
	case wire.OpCreate, wire.OpResetPassword, wire.OpDelete, wire.OpList, wire.OpDiscardOldPassword:
		return target, op, nil
	}
	return target, "", wire.Errorf(wire.CodeInvalidJob, "unknown op %s (want user.create, user.reset_password, user.delete, user.list or user.discard_old_password)", wire.Quote(opToken))
}

// decodeBody reads the body's members into j in one pass, rejecting what is
// not one JSON object of known, correctly typed, non-repeated fields the op
// uses. Range and grammar checks that need the whole body are in checkFields.
func (j *Job) decodeBody(body []byte) (field, *wire.Error) {
	// Syntax first, over the whole body: it guarantees the structure
	// objectIter relies on and that nothing follows the object, and it makes
	// "not JSON" win over any field error.
	switch checkObject(body) {
	case notJSON:
		return 0, wire.Errorf(wire.CodeInvalidJob, "body is not JSON")
	case notObject:
		return 0, wire.Errorf(wire.CodeInvalidJob, "body is not a JSON object")
	}
	it, _ := newObjectIter(body)
	// encoding/json accepts invalid UTF-8 in strings; the contract does not.
	if !utf8.Valid(body) {
		return 0, wire.Errorf(wire.CodeInvalidJob, "body is not valid UTF-8")
	}
	allowed := opFields(j.Op)
	var seen field
	if j.Op == wire.OpList {
		j.Limit = wire.DefaultLimit
	}
	for {
		rawKey, val, ok := it.next()
		if !ok {
			break
		}
		key, ok := unquote(rawKey)
		if !ok {
			return 0, wire.Errorf(wire.CodeInvalidJob, "body is not JSON")
		}
		f := lookupField(key)
		switch {
		case f == 0:
			return 0, wire.Errorf(wire.CodeInvalidJob, "unknown field %s", wire.Quote(string(key)))
		case seen&f != 0:
			// Never resolve a repeated key silently: which one wins differs
			// between decoders, and a repeated read_only must not be guessed.
			return 0, wire.Errorf(wire.CodeInvalidJob, "duplicate field %s", wire.Quote(string(key)))
		case allowed&f == 0:
			return 0, wire.Errorf(wire.CodeInvalidJob, "field %s is not used by %s", wire.Quote(string(key)), j.Op)
		}
		seen |= f
		if err := j.setField(f, key, val); err != nil {
			return 0, err
		}
	}
	if seen&fieldID == 0 {
		return 0, wire.Errorf(wire.CodeInvalidJob, "missing field \"id\"")
	}
	// A missing username breaks the username rule (contract §2: required),
	// so it is invalid_username, decided after every invalid_job check.
	if allowed&fieldReplyKey != 0 && seen&fieldReplyKey == 0 {
		return 0, wire.Errorf(wire.CodeInvalidJob, "missing field \"reply_key\"")
	}
	return seen, nil
}

// setField stores one member's value. Messages name the field and the JSON
// type found, never the value (it could be a password).
func (j *Job) setField(f field, key, val []byte) *wire.Error {
	if f == fieldReadOnly {
		switch string(val) {
		case "true":
			j.ReadOnly = true
		case "false":
			j.ReadOnly = false
		default:
			return wire.Errorf(wire.CodeInvalidJob, "field %s must be a boolean, not %s", wire.Quote(string(key)), jsonKind(val))
		}
		return nil
	}
	if f == fieldLimit {
		n, err := parseLimit(key, val)
		if err != nil {
			return err
		}
		j.Limit = n
		return nil
	}
	if val[0] != '"' {
		return wire.Errorf(wire.CodeInvalidJob, "field %s must be a string, not %s", wire.Quote(string(key)), jsonKind(val))
	}
	b, ok := unquote(val)
	if !ok {
		return wire.Errorf(wire.CodeInvalidJob, "field %s is not a valid JSON string", wire.Quote(string(key)))
	}
	s := string(b)
	switch f {
	case fieldID:
		j.ID = s
	case fieldUsername:
		j.Username = s
	case fieldReplyKey:
		j.ReplyKey = s
	case fieldPassword:
		j.SealedPassword = secret.New(s)
	case fieldAfter:
		j.After = s
	case fieldKeepOldFor:
		d, err := wire.ParseKeepOld(s)
		if err != nil {
			return err
		}
		j.KeepOldFor = d
	}
	return nil
}

// parseLimit accepts a JSON integer literal in 1..MaxLimit. 1.0 and 1e3 are
// refused as mistyped: a page size is written as an integer.
func parseLimit(key, val []byte) (int, *wire.Error) {
	if kind := jsonKind(val); kind != "a number" {
		return 0, wire.Errorf(wire.CodeInvalidJob, "field %s must be an integer, not %s", wire.Quote(string(key)), kind)
	}
	digits := val
	neg := digits[0] == '-'
	if neg {
		digits = digits[1:]
	}
	n := 0
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, wire.Errorf(wire.CodeInvalidJob, "field %s must be an integer, not a fraction or exponent", wire.Quote(string(key)))
		}
		// Saturate: anything past MaxLimit is out of range whatever its size.
		if n <= wire.MaxLimit {
			n = n*10 + int(c-'0')
		}
	}
	if neg || n < 1 || n > wire.MaxLimit {
		return 0, wire.Errorf(wire.CodeInvalidJob, "field %s is %s, outside 1..%d", wire.Quote(string(key)), wire.Truncate(string(val)), wire.MaxLimit)
	}
	return n, nil
}

// checkFields applies the rules that need the decoded values.
func (j *Job) checkFields(headerID string) *wire.Error {
	if !validID(j.ID) {
		return wire.Errorf(wire.CodeInvalidJob, "id %s does not match ^[A-Za-z0-9_-]{1,64}$", wire.Quote(j.ID))
	}
	if headerID != "" && headerID != j.ID {
		return wire.Errorf(wire.CodeInvalidJob, "id %s differs from the Nats-Msg-Id header %s", wire.Quote(j.ID), wire.Quote(headerID))
	}
	if opFields(j.Op)&fieldReplyKey != 0 {
		raw, ok := decodeReplyKey(j.ReplyKey)
		if !ok {
			return wire.Errorf(wire.CodeInvalidJob, "reply_key %s is not a curve public key (an nkeys xkey starting with \"X\")", wire.Quote(j.ReplyKey))
		}
		if smallOrder(raw) {
			return wire.Errorf(wire.CodeInvalidJob, "reply_key %s is a curve point of small order: anything sealed to it could be opened by anyone; "+
				"send a key pair made fresh for the job", wire.Quote(j.ReplyKey))
		}
	}
	if j.After != "" && !validCursor(j.After) {
		return wire.Errorf(wire.CodeInvalidJob, "after %s is not a username cursor (1 to 128 characters, no control character)", wire.Quote(j.After))
	}
	return nil
}

// ResultID returns the id a job's result is published under (contract §3):
// the Nats-Msg-Id header when it is a valid id, else the body's "id" when
// valid, else "seq-<stream sequence>". It works on any bytes. The body's id is
// the exact key "id" of a JSON object (not "ID", which Parse rejects as
// unknown); when the body repeats "id" with different values neither is
// trusted.
func ResultID(headerID string, body []byte, seq uint64) string {
	if validID(headerID) {
		return headerID
	}
	if id, ok := bodyID(body); ok {
		return id
	}
	return "seq-" + strconv.FormatUint(seq, 10)
}

func bodyID(body []byte) (string, bool) {
	if checkObject(body) != isObject {
		return "", false
	}
	it, _ := newObjectIter(body)
	var id []byte
	for {
		rawKey, val, ok := it.next()
		if !ok {
			break
		}
		key, ok := unquote(rawKey)
		if !ok || string(key) != "id" {
			continue
		}
		if val[0] != '"' {
			return "", false
		}
		v, ok := unquote(val)
		if !ok || (id != nil && string(id) != string(v)) {
			return "", false
		}
		id = v
	}
	if !validID(string(id)) {
		return "", false
	}
	return string(id), true
}

// validID reports whether s matches ^[A-Za-z0-9_-]{1,64}$.
func validID(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validTarget reports whether s matches ^[a-z0-9][a-z0-9_-]{0,62}$.
func validTarget(s string) bool {
	if len(s) < 1 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '_' || c == '-')) {
			return false
		}
	}
	return true
}

// validCursor reports whether s can be a list cursor: 1 to 128 characters
// of UTF-8, none a control character. A cursor is the last username of a
// page (contract §2), and a page may end on an account that belongs to the
// target but was made outside dbusers, whose name MySQL lets hold quotes,
// spaces or backslashes (MariaDB names run to 128 characters): refusing
// those would stop a listing there. It reaches SQL only as a parameter,
// which the driver escapes, and messages only through quote.
func validCursor(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	n := 0
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
		n++
	}
	return n >= 1 && n <= 128
}
