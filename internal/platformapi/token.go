package platformapi

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// MaxClockSkew is how far the platform's clock may be ahead or behind
// ours: a token is still taken this long after its exp.
const MaxClockSkew = 60 * time.Second

// TokenError says why a token was refused, in words fit for the caller:
// it never quotes the token.
type TokenError struct{ Reason string }

func (e *TokenError) Error() string { return e.Reason }

func refuse(format string, args ...any) error {
	return &TokenError{Reason: fmt.Sprintf(format, args...)}
}

// Verifier checks the platform's bearer tokens: JWTs signed HS256 with the
// shared key, with an exp and a sub that names the database.
type Verifier struct {
	key []byte
	now func() time.Time
}

// NewVerifier returns a Verifier for key (at least MinKeyLen bytes). now
// is the clock; nil is time.Now.
func NewVerifier(key []byte, now func() time.Time) (*Verifier, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("token key: %d bytes; at least %d are needed", len(key), MinKeyLen)
	}
	if now == nil {
		now = time.Now
	}
	return &Verifier{key: bytes.Clone(key), now: now}, nil
}

// tokenHeader is the JOSE header. crit is read only to refuse it: a
// token that demands extensions we do not know must not pass.
type tokenHeader struct {
	Alg  string          `json:"alg"`
	Crit json.RawMessage `json:"crit"`
}

// tokenClaims are the claims that decide; others are ignored. exp and
// nbf are raw: encoding/json would take the string "9999999999" for a
// json.Number, and a NumericDate is a JSON number only.
type tokenClaims struct {
	Sub *string         `json:"sub"`
	Exp json.RawMessage `json:"exp"`
	Nbf json.RawMessage `json:"nbf"`
}

// Verify checks token for databaseID: its shape, alg HS256, the signature
// (compared in constant time), exp (required, at most MaxClockSkew in the
// past), nbf when present, and sub equal to databaseID. The signature is
// checked before any claim is read, so nothing of an unsigned token
// decides anything. Errors are *TokenError.
func (v *Verifier) Verify(token, databaseID string) error {
	if token == "" {
		return refuse("no bearer token: send Authorization: Bearer <token>")
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return refuse("the token is not a JWT (three base64url parts joined by dots)")
	}
	rawHeader, err1 := b64(parts[0])
	rawClaims, err2 := b64(parts[1])
	sig, err3 := b64(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return refuse("the token is not a JWT (a part is not base64url without padding)")
	}
	var h tokenHeader
	if err := json.Unmarshal(rawHeader, &h); err != nil {
		return refuse("the token's header is not a JSON object")
	}
	if h.Alg != "HS256" {
		return refuse("the token's alg is not HS256")
	}
	if len(h.Crit) > 0 {
		return refuse("the token's header has crit extensions, which are not supported")
	}
	mac := hmac.New(sha256.New, v.key)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return refuse("the token's signature does not match the key")
	}

	var c tokenClaims
	if err := json.Unmarshal(rawClaims, &c); err != nil {
		return refuse("the token's claims are not a JSON object with a string sub")
	}
	now := v.now()
	if c.Exp == nil || string(c.Exp) == "null" {
		return refuse("the token has no exp claim; a token must expire")
	}
	exp, ok := numericDate(c.Exp)
	if !ok {
		return refuse("the token's exp is not a number of seconds")
	}
	if now.After(exp.Add(MaxClockSkew)) {
		return refuse("the token expired at %s", exp.UTC().Format(time.RFC3339))
	}
	if c.Nbf != nil {
		nbf, ok := numericDate(c.Nbf)
		if !ok {
			return refuse("the token's nbf is not a number of seconds")
		}
		if now.Add(MaxClockSkew).Before(nbf) {
			return refuse("the token is not valid before %s", nbf.UTC().Format(time.RFC3339))
		}
	}
	if c.Sub == nil || *c.Sub == "" {
		return refuse("the token has no sub claim naming the database")
	}
	if *c.Sub != databaseID {
		return refuse("the token is for another database")
	}
	return nil
}

// b64 decodes one JWT part: base64url without padding (RFC 7515).
func b64(s string) ([]byte, error) { return base64.RawURLEncoding.Strict().DecodeString(s) }

// numericDate reads a JWT NumericDate: a JSON number of seconds since the
// epoch, possibly fractional; a string, even of digits, is not one.
func numericDate(raw json.RawMessage) (time.Time, bool) {
	if len(raw) == 0 || !(raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9') {
		return time.Time{}, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// SignToken mints an HS256 JWT with claims, as the platform does. The API
// never calls it; tests, make run and platforms written in Go do.
func SignToken(key []byte, claims map[string]any) (string, error) {
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	body, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("token claims: %w", err)
	}
	signing := header + "." + base64.RawURLEncoding.EncodeToString(body)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}

// errNoBearer is a request without an Authorization: Bearer header.
var errNoBearer = errors.New("no bearer token")

// bearer extracts the token of an Authorization header value.
func bearer(header string) (string, error) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", errNoBearer
	}
	return strings.TrimSpace(token), nil
}
