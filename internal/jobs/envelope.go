package jobs

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dbusers/dbusers/secret"
	"github.com/nats-io/nkeys"
)

// Op is a job operation as it appears in results: "user.create",
// "user.reset_password", "user.delete", "user.list".
type Op string

// The operations a job subject can name.
const (
	OpCreate        Op = "user.create"
	OpResetPassword Op = "user.reset_password"
	OpDelete        Op = "user.delete"
	OpList          Op = "user.list"
)

// Code is a contract error code (the closed set of contract §3).
type Code string

// The contract's error codes. The first three are decided from the job alone,
// in this order, before any MySQL access.
const (
	CodeInvalidJob      Code = "invalid_job"
	CodeInvalidUsername Code = "invalid_username"
	CodeInvalidPassword Code = "invalid_password"
	CodeUnknownTarget   Code = "unknown_target"
	CodeUserExists      Code = "user_exists"
	CodeUserNotFound    Code = "user_not_found"
	CodeProtectedUser   Code = "protected_user"
	CodeForeignUser     Code = "foreign_user"
	CodeUnavailable     Code = "unavailable"
	CodeInternal        Code = "internal"
)

// Page sizes of a list job.
const (
	// DefaultLimit is the page size of a list job that gives no limit.
	DefaultLimit = 1000
	// MaxLimit is the largest page size a list job may ask for.
	MaxLimit = 5000
)

// Error is a job's terminal error: a contract code and a message that says
// what was wrong (never a password).
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// cause is the error behind a failure (a driver's), for the worker's
	// log line only: the message says what happened in plain words.
	cause error
}

// Error returns "code: message".
func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns an Error with the given code and a formatted message,
// which is made a sentence: it gets a full stop unless it ends with one
// (or "?" or "!"). It starts in lower case unless its first word is a
// name, since clients put it after words of their own ("Invalid
// username: …"). The arguments must never include a password.
func Errorf(code Code, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if msg != "" && !strings.HasSuffix(msg, ".") && !strings.HasSuffix(msg, "?") && !strings.HasSuffix(msg, "!") {
		msg += "."
	}
	return &Error{Code: code, Message: msg}
}

// Job is a decoded, validated job.
type Job struct {
	ID             string // the idempotency key
	Target         string // subject token
	Op             Op
	Username       string        // "" for list
	ReadOnly       bool          // create only
	ReplyKey       string        // create and reset_password: the requester's curve public key
	SealedPassword secret.Secret // base64 sealed chosen password, empty when the worker must generate one
	After          string        // list cursor, "" for the first page
	Limit          int           // list page size; DefaultLimit when absent, 0 for other ops
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
	}
	return 0
}

// opFields is the set of fields an op uses; any other known field is an error
// so that a misplaced field never passes unnoticed.
func opFields(op Op) field {
	switch op {
	case OpCreate:
		return fieldID | fieldUsername | fieldReadOnly | fieldReplyKey | fieldPassword
	case OpResetPassword:
		return fieldID | fieldUsername | fieldReplyKey | fieldPassword
	case OpDelete:
		return fieldID | fieldUsername
	case OpList:
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
func Parse(prefix, subject, headerID string, body []byte) (Job, *Error) {
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
	if op != OpList {
		if err := CheckUsername(j.Username); err != nil {
			return Job{Target: target, Op: op}, err
		}
	}
	// An empty password would otherwise read as "generate one"; a requester
	// who sent the field meant to choose it.
	if seen&fieldPassword != 0 && j.SealedPassword.IsZero() {
		return Job{Target: target, Op: op}, Errorf(CodeInvalidPassword, "password is empty: omit the field to have one generated")
	}
	return j, nil
}

// parseSubject splits <prefix>.jobs.<target>.user.<op>.
func parseSubject(prefix, subject string) (string, Op, *Error) {
	rest, ok := strings.CutPrefix(subject, prefix)
	if ok {
		rest, ok = strings.CutPrefix(rest, ".jobs.")
	}
	if !ok {
		return "", "", Errorf(CodeInvalidJob, "subject %s is not under %s", quote(subject), quote(prefix+".jobs."))
	}
	target, opToken, hasOp := strings.Cut(rest, ".")
	if !validTarget(target) {
		return "", "", Errorf(CodeInvalidJob, "target token %s is outside the grammar ^[a-z0-9][a-z0-9_-]{0,62}$", quote(target))
	}
	if !hasOp {
		return target, "", Errorf(CodeInvalidJob, "subject %s names no op", quote(subject))
	}
	switch op := Op(opToken); op {
	case OpCreate, OpResetPassword, OpDelete, OpList:
		return target, op, nil
	}
	return target, "", Errorf(CodeInvalidJob, "unknown op %s (want user.create, user.reset_password, user.delete or user.list)", quote(opToken))
}

// decodeBody reads the body's members into j in one pass, rejecting what is
// not one JSON object of known, correctly typed, non-repeated fields the op
// uses. Range and grammar checks that need the whole body are in checkFields.
func (j *Job) decodeBody(body []byte) (field, *Error) {
	// Syntax first, over the whole body: it guarantees the structure
	// objectIter relies on and that nothing follows the object, and it makes
	// "not JSON" win over any field error.
	switch checkObject(body) {
	case notJSON:
		return 0, Errorf(CodeInvalidJob, "body is not JSON")
	case notObject:
		return 0, Errorf(CodeInvalidJob, "body is not a JSON object")
	}
	it, _ := newObjectIter(body)
	// encoding/json accepts invalid UTF-8 in strings; the contract does not.
	if !utf8.Valid(body) {
		return 0, Errorf(CodeInvalidJob, "body is not valid UTF-8")
	}
	allowed := opFields(j.Op)
	var seen field
	if j.Op == OpList {
		j.Limit = DefaultLimit
	}
	for {
		rawKey, val, ok := it.next()
		if !ok {
			break
		}
		key, ok := unquote(rawKey)
		if !ok {
			return 0, Errorf(CodeInvalidJob, "body is not JSON")
		}
		f := lookupField(key)
		switch {
		case f == 0:
			return 0, Errorf(CodeInvalidJob, "unknown field %s", quote(string(key)))
		case seen&f != 0:
			// Never resolve a repeated key silently: which one wins differs
			// between decoders, and a repeated read_only must not be guessed.
			return 0, Errorf(CodeInvalidJob, "duplicate field %s", quote(string(key)))
		case allowed&f == 0:
			return 0, Errorf(CodeInvalidJob, "field %s is not used by %s", quote(string(key)), j.Op)
		}
		seen |= f
		if err := j.setField(f, key, val); err != nil {
			return 0, err
		}
	}
	if seen&fieldID == 0 {
		return 0, Errorf(CodeInvalidJob, "missing field \"id\"")
	}
	// A missing username breaks the username rule (contract §2: required),
	// so it is invalid_username, decided after every invalid_job check.
	if allowed&fieldReplyKey != 0 && seen&fieldReplyKey == 0 {
		return 0, Errorf(CodeInvalidJob, "missing field \"reply_key\"")
	}
	return seen, nil
}

// setField stores one member's value. Messages name the field and the JSON
// type found, never the value (it could be a password).
func (j *Job) setField(f field, key, val []byte) *Error {
	if f == fieldReadOnly {
		switch string(val) {
		case "true":
			j.ReadOnly = true
		case "false":
			j.ReadOnly = false
		default:
			return Errorf(CodeInvalidJob, "field %s must be a boolean, not %s", quote(string(key)), jsonKind(val))
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
		return Errorf(CodeInvalidJob, "field %s must be a string, not %s", quote(string(key)), jsonKind(val))
	}
	b, ok := unquote(val)
	if !ok {
		return Errorf(CodeInvalidJob, "field %s is not a valid JSON string", quote(string(key)))
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
	}
	return nil
}

// parseLimit accepts a JSON integer literal in 1..MaxLimit. 1.0 and 1e3 are
// refused as mistyped: a page size is written as an integer.
func parseLimit(key, val []byte) (int, *Error) {
	if kind := jsonKind(val); kind != "a number" {
		return 0, Errorf(CodeInvalidJob, "field %s must be an integer, not %s", quote(string(key)), kind)
	}
	digits := val
	neg := digits[0] == '-'
	if neg {
		digits = digits[1:]
	}
	n := 0
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, Errorf(CodeInvalidJob, "field %s must be an integer, not a fraction or exponent", quote(string(key)))
		}
		// Saturate: anything past MaxLimit is out of range whatever its size.
		if n <= MaxLimit {
			n = n*10 + int(c-'0')
		}
	}
	if neg || n < 1 || n > MaxLimit {
		return 0, Errorf(CodeInvalidJob, "field %s is %s, outside 1..%d", quote(string(key)), truncate(string(val)), MaxLimit)
	}
	return n, nil
}

// checkFields applies the rules that need the decoded values.
func (j *Job) checkFields(headerID string) *Error {
	if !validID(j.ID) {
		return Errorf(CodeInvalidJob, "id %s does not match ^[A-Za-z0-9_-]{1,64}$", quote(j.ID))
	}
	if headerID != "" && headerID != j.ID {
		return Errorf(CodeInvalidJob, "id %s differs from the Nats-Msg-Id header %s", quote(j.ID), quote(headerID))
	}
	if opFields(j.Op)&fieldReplyKey != 0 && !validReplyKey(j.ReplyKey) {
		return Errorf(CodeInvalidJob, "reply_key %s is not a curve public key (an nkeys xkey starting with \"X\")", quote(j.ReplyKey))
	}
	if j.After != "" && !validCursor(j.After) {
		return Errorf(CodeInvalidJob, "after %s is not a username cursor (1 to 128 characters, no control character)", quote(j.After))
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

// CheckPassword applies the chosen-password rule: 24 to 64 characters, each
// printable ASCII 0x21–0x7E other than ' and " (a backslash is allowed). The
// message says which rule failed without echoing the password.
func CheckPassword(pw string) *Error {
	n := utf8.RuneCountInString(pw)
	if n < 24 || n > 64 {
		return Errorf(CodeInvalidPassword, "password has %s; 24 to 64 are allowed", characters(n))
	}
	pos := 0
	for _, r := range pw {
		pos++
		if r < 0x21 || r > 0x7e || r == '\'' || r == '"' {
			return Errorf(CodeInvalidPassword, "password character at position %d is not allowed (printable ASCII other than ' and \")", pos)
		}
	}
	return nil
}

// reservedReason says why a name is reserved, or "" when it is not. The
// comparison ignores case so that no variant of a server account's name is
// ever made (and "Root" is never mistaken for "root" by a reader). This is the
// one place the reserved names are kept.
func reservedReason(name string) string {
	switch {
	case strings.EqualFold(name, "root"):
		return "the server's superuser"
	case strings.EqualFold(name, "public"):
		return "MariaDB's PUBLIC role"
	case strings.EqualFold(name, "debian_sys_maint"):
		return "Debian's maintenance account"
	case strings.EqualFold(name, "healthcheck"):
		return "the health-check account of the MariaDB container image"
	case strings.EqualFold(name, "mariadb.sys"):
		return "MariaDB's system account"
	case hasPrefixFold(name, "mysql"):
		// mysql.sys, mysql.session, mysql.infoschema and whatever MySQL adds.
		return "names beginning with mysql belong to the server"
	case hasPrefixFold(name, "mariadb"):
		// mariadb.sys and whatever MariaDB adds.
		return "names beginning with mariadb belong to the server"
	}
	return ""
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// CheckUsername applies the username rule: ^[a-z][a-z0-9_]{5,31}$ and not a
// reserved account. The message says which rule failed and shows the name
// quoted and truncated.
func CheckUsername(name string) *Error {
	if name == "" {
		return Errorf(CodeInvalidUsername, "username is missing or empty")
	}
	if why := reservedReason(name); why != "" {
		return Errorf(CodeInvalidUsername, "username %s is reserved (%s)", quote(name), why)
	}
	if n := utf8.RuneCountInString(name); n < 6 || n > 32 {
		return Errorf(CodeInvalidUsername, "username %s has %s; 6 to 32 are allowed", quote(name), characters(n))
	}
	if c := name[0]; c < 'a' || c > 'z' {
		return Errorf(CodeInvalidUsername, "username %s must begin with a lowercase letter a-z", quote(name))
	}
	pos := 0
	for _, r := range name {
		pos++
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return Errorf(CodeInvalidUsername, "username %s: character at position %d is not allowed (only a-z, 0-9 and _)", quote(name), pos)
		}
	}
	return nil
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

// validReplyKey reports whether s is an encoded curve public key. The length
// check refuses a well-formed encoding of the wrong size, which
// IsValidPublicCurveKey alone lets through.
func validReplyKey(s string) bool {
	return len(s) == 56 && nkeys.IsValidPublicCurveKey(s)
}

// maxQuoted bounds how much of a hostile string a message repeats.
const maxQuoted = 64

// characters counts n characters in words: "1 character", "5 characters".
func characters(n int) string {
	if n == 1 {
		return "1 character"
	}
	return strconv.Itoa(n) + " characters"
}

// quote renders s for a message: escaped to ASCII so that control characters
// and lookalike letters show, and truncated so a message stays short.
func quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.QuoteToASCII(s)
	}
	return strconv.QuoteToASCII(cut(s)) + "..."
}

// truncate shortens s for a message without quoting it.
func truncate(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	return cut(s) + "..."
}

// cut returns at most maxQuoted bytes of s, not splitting a rune.
func cut(s string) string {
	n := maxQuoted
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// jsonKind names the JSON type of a raw value for a message.
func jsonKind(val []byte) string {
	switch val[0] {
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "a number"
}

// unquote returns the contents of a raw JSON string. Without escapes it is a
// subslice of raw (no allocation); with them encoding/json unescapes it.
func unquote(raw []byte) ([]byte, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return nil, false
	}
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c == '\\' {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, false
			}
			return []byte(s), true
		}
	}
	return inner, true
}

// objectIter walks the members of a top-level JSON object without decoding
// the values. The input must have passed checkObject: the iterator relies on
// it for structure, yet checks bounds so that it can never panic.
type objectIter struct {
	b []byte
	i int
}

// newObjectIter starts an iterator after the object's '{'; ok is false when
// the value is not an object.
func newObjectIter(b []byte) (objectIter, bool) {
	it := objectIter{b: b}
	it.skipSpace()
	if it.i >= len(b) || b[it.i] != '{' {
		return it, false
	}
	it.i++
	return it, true
}

// next returns the next member's raw key (quoted) and raw value; ok is false
// at the end of the object.
func (it *objectIter) next() (key, val []byte, ok bool) {
	it.skipSpace()
	if it.i < len(it.b) && it.b[it.i] == ',' {
		it.i++
		it.skipSpace()
	}
	if it.i >= len(it.b) || it.b[it.i] != '"' {
		return nil, nil, false
	}
	key = it.value()
	it.skipSpace()
	if it.i >= len(it.b) || it.b[it.i] != ':' {
		return nil, nil, false
	}
	it.i++
	it.skipSpace()
	if it.i >= len(it.b) {
		return nil, nil, false
	}
	val = it.value()
	return key, val, len(val) > 0
}

func (it *objectIter) skipSpace() { it.i = skipSpaceAt(it.b, it.i) }

// value returns the raw value starting at it.i and moves past it.
func (it *objectIter) value() []byte {
	b, start := it.b, it.i
	switch b[it.i] {
	case '"':
		it.i = skipString(b, it.i)
	case '{', '[':
		depth := 0
		for it.i < len(b) {
			switch b[it.i] {
			case '"':
				it.i = skipString(b, it.i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			it.i++
			if depth == 0 {
				break
			}
		}
	default:
		for it.i < len(b) {
			switch b[it.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return b[start:it.i]
			}
			it.i++
		}
	}
	return b[start:it.i]
}

// skipString returns the index after the string that opens at b[i].
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// syntax is what checkObject found.
type syntax uint8

const (
	isObject  syntax = iota // one JSON object and nothing else but white space
	notObject               // valid JSON, but not an object
	notJSON
)

// checkObject validates body as JSON, as json.Valid would, and says whether it
// is an object. A job body is a flat object of scalars, which this checks in
// one cheap pass; json.Valid's per-byte state machine costs several times
// more. A nested value (never valid in a job) and anything that is not an
// object are left to json.Valid.
func checkObject(b []byte) syntax {
	i := skipSpaceAt(b, 0)
	if i >= len(b) || b[i] != '{' {
		if json.Valid(b) {
			return notObject
		}
		return notJSON
	}
	i = skipSpaceAt(b, i+1)
	if i < len(b) && b[i] == '}' {
		return endOfBody(b, i+1)
	}
	for {
		// member: string ws ':' ws value
		if i >= len(b) || b[i] != '"' {
			return notJSON
		}
		if i = scanString(b, i); i < 0 {
			return notJSON
		}
		i = skipSpaceAt(b, i)
		if i >= len(b) || b[i] != ':' {
			return notJSON
		}
		i = skipSpaceAt(b, i+1)
		if i >= len(b) {
			return notJSON
		}
		switch b[i] {
		case '{', '[':
			if json.Valid(b) {
				return isObject
			}
			return notJSON
		case '"':
			i = scanString(b, i)
		case 't':
			i = scanLiteral(b, i, "true")
		case 'f':
			i = scanLiteral(b, i, "false")
		case 'n':
			i = scanLiteral(b, i, "null")
		default:
			i = scanNumber(b, i)
		}
		if i < 0 {
			return notJSON
		}
		i = skipSpaceAt(b, i)
		if i >= len(b) {
			return notJSON
		}
		switch b[i] {
		case ',':
			i = skipSpaceAt(b, i+1)
		case '}':
			return endOfBody(b, i+1)
		default:
			return notJSON
		}
	}
}

// endOfBody accepts only white space after the object.
func endOfBody(b []byte, i int) syntax {
	if skipSpaceAt(b, i) != len(b) {
		return notJSON
	}
	return isObject
}

func skipSpaceAt(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString validates the JSON string that opens at b[i] and returns the
// index after it, or -1. Bytes of 0x80 and above pass, as in json.Valid;
// UTF-8 is checked separately.
func scanString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < 0x20:
			return -1
		case c == '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return -1
				}
				for _, h := range b[i+1 : i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return -1
					}
				}
				i += 4
			default:
				return -1
			}
		}
	}
	return -1
}

// scanLiteral checks that lit is at b[i] and returns the index after it, or
// -1. What follows is checked by the caller (a delimiter must come next).
func scanLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// scanNumber validates a JSON number at b[i]:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and returns the index after
// it, or -1.
func scanNumber(b []byte, i int) int {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = scanDigits(b, i)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := scanDigits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := scanDigits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func scanDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}
