// Package client is the Go client of the dbusers worker, for orchestrators
// and the dbusers CLI. It speaks the wire contract (v1) over a NATS
// connection the caller opens: it publishes jobs to the jobs stream, waits
// for each job's one result, and hands back the account and, when the
// worker generated it, the password, already read from the vault, opened,
// checked against the job id and purged.
//
// The mechanics are the client's: it discovers the worker's curve key on
// P.info (or uses a pinned one), makes a fresh curve key per job, seals a
// chosen password to the worker, gives every job a random id that it also
// sends as the Nats-Msg-Id header, subscribes to the result's subject
// before publishing, and falls back to the result stored in the results
// stream when the live message was missed (after a reconnect, or when the
// stream dropped a repeated job id as a duplicate).
//
// Every call is bounded by its context; a call whose context has no
// deadline gets the client's default timeout (WithTimeout). Failures the
// worker answers are *Error values carrying a contract code; each code has a
// sentinel (ErrUserExists, ErrProtectedUser, …) for errors.Is.
package client

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// Defaults of a Client.
const (
	// DefaultPrefix is the subject prefix P of the worker's NATS objects.
	DefaultPrefix = "dbusers"
	// DefaultTimeout bounds a call whose context has no deadline.
	DefaultTimeout = 30 * time.Second
	// DefaultListPageSize is the page size ListUsers asks for.
	DefaultListPageSize = wire.DefaultLimit
)

// resultCheckInterval is how often a call waiting for its result also
// looks for it in the results stream, in case the live message was missed.
const resultCheckInterval = 2 * time.Second

// Account is a database account as the worker reports it.
type Account = wire.Account

// Info is what the worker's info endpoint (P.info) answers.
type Info struct {
	// XKey is the worker's curve public key ("X…").
	XKey string `json:"xkey"`
	// Version is the worker's version.
	Version string `json:"version"`
}

// Option configures a Client.
type Option func(*settings)

type settings struct {
	apiPrefix string
	prefix    string
	workerKey string
	timeout   time.Duration
	pageSize  int
}

// WithPrefix sets the subject prefix P (default "dbusers"); it must be the
// worker's nats.prefix.
func WithPrefix(prefix string) Option { return func(s *settings) { s.prefix = prefix } }

// WithJetStreamAPIPrefix sets the subject prefix of the JetStream API the
// client reaches the worker's streams through (default "$JS.API"). An
// orchestrator in a NATS account of its own imports the few requests it
// needs under a prefix of its own (deploy/nats-accounts.conf: "dbusers.api").
func WithJetStreamAPIPrefix(prefix string) Option {
	return func(s *settings) { s.apiPrefix = prefix }
}

// WithWorkerKey pins the worker's curve public key ("X…"). The client then
// never asks P.info for it: a chosen password is sealed to this key only,
// and a generated one is accepted only when this key sealed it, so a
// process impersonating the worker on P.info learns nothing.
func WithWorkerKey(xkey string) Option { return func(s *settings) { s.workerKey = xkey } }

// WithTimeout sets the bound of a call whose context has no deadline
// (default 30s). A context's own deadline always wins.
func WithTimeout(d time.Duration) Option { return func(s *settings) { s.timeout = d } }

// WithListPageSize sets the page size ListUsers asks for, 1 to 5000
// (default 1000). ListUsers follows the cursor whatever the page size.
func WithListPageSize(n int) Option { return func(s *settings) { s.pageSize = n } }

// Client sends jobs to a dbusers worker. It is safe for concurrent use.
type Client struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	prefix   string
	pinned   string
	timeout  time.Duration
	pageSize int
	results  string // the results stream's name

	apiPrefix string // of the JetStream API, "$JS.API" by default

	mu        sync.Mutex
	workerKey string // discovered on P.info; "" until then
}

// New returns a Client that sends jobs over nc, which the caller opened and
// closes. It does not contact the worker: the first call that needs the
// worker's key asks for it (WorkerInfo asks explicitly).
func New(nc *nats.Conn, opts ...Option) (*Client, error) {
	if nc == nil {
		return nil, errors.New("client: nil NATS connection")
	}
	s := settings{apiPrefix: jetstream.DefaultAPIPrefix, prefix: DefaultPrefix, timeout: DefaultTimeout, pageSize: DefaultListPageSize}
	for _, o := range opts {
		o(&s)
	}
	if !validPrefix(s.prefix) {
		return nil, fmt.Errorf("client: prefix %q must match ^[A-Za-z0-9_-]+$", s.prefix)
	}
	if s.workerKey != "" && !nkeys.IsValidPublicCurveKey(s.workerKey) {
		return nil, errors.New("client: the pinned worker key is not a curve public key (an nkeys xkey starting with \"X\")")
	}
	if s.timeout <= 0 {
		return nil, fmt.Errorf("client: timeout %v must be positive", s.timeout)
	}
	if s.pageSize < 1 || s.pageSize > wire.MaxLimit {
		return nil, fmt.Errorf("client: list page size %d is outside 1..%d", s.pageSize, wire.MaxLimit)
	}
	s.apiPrefix = strings.TrimSuffix(s.apiPrefix, ".")
	if s.apiPrefix == "" || strings.ContainsAny(s.apiPrefix, " *>") {
		return nil, fmt.Errorf("client: JetStream API prefix %q is not a subject prefix", s.apiPrefix)
	}
	js, err := jetstream.NewWithAPIPrefix(nc, s.apiPrefix)
	if err != nil {
		return nil, fmt.Errorf("client: jetstream: %w", err)
	}
	_, results, _, _ := wire.Names(s.prefix)
	return &Client{
		nc: nc, js: js, prefix: s.prefix, pinned: s.workerKey, timeout: s.timeout,
		pageSize: s.pageSize, results: results, apiPrefix: s.apiPrefix,
	}, nil
}

func validPrefix(p string) bool {
	if p == "" {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// bound applies the default timeout to a context without a deadline.
func (c *Client) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, c.timeout)
}

// WorkerInfo asks the worker's info endpoint (P.info) for its key and
// version. A worker answers only once it is taking jobs, so this is also a
// readiness check. Errors wrap ErrNoWorker when nobody answered. Unless a
// key is pinned, the answer's key is what later calls seal to.
func (c *Client) WorkerInfo(ctx context.Context) (Info, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	subject := c.prefix + ".info"
	msg, err := c.nc.RequestWithContext(ctx, subject, nil)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			return Info{}, fmt.Errorf("client: %w on %s: %w", ErrNoWorker, subject, err)
		}
		return Info{}, fmt.Errorf("client: request %s: %w", subject, err)
	}
	var info Info
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		return Info{}, fmt.Errorf("client: the answer on %s is not {\"xkey\",\"version\"}: %w", subject, err)
	}
	if !nkeys.IsValidPublicCurveKey(info.XKey) {
		return Info{}, fmt.Errorf("client: the answer on %s holds no curve public key", subject)
	}
	if c.pinned == "" {
		c.mu.Lock()
		c.workerKey = info.XKey
		c.mu.Unlock()
	}
	return info, nil
}

// key returns the worker's key: the pinned one, the cached one, or a fresh
// answer of P.info.
func (c *Client) key(ctx context.Context) (string, error) {
	if c.pinned != "" {
		return c.pinned, nil
	}
	c.mu.Lock()
	k := c.workerKey
	c.mu.Unlock()
	if k != "" {
		return k, nil
	}
	info, err := c.WorkerInfo(ctx)
	if err != nil {
		return "", err
	}
	return info.XKey, nil
}

// forgetKey drops a cached worker key that failed to open a seal (the
// worker may have a new key since it was asked).
func (c *Client) forgetKey(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.workerKey == k {
		c.workerKey = ""
	}
}

// newJobID returns a random job id in the contract's grammar.
func newJobID() string { return "job-" + rand.Text() }

// jobBody is a job as published (contract §2). Fields that an op does not
// use are left out, since the worker rejects them.
type jobBody struct {
	ID       string `json:"id"`
	Username string `json:"username,omitempty"`
	ReadOnly *bool  `json:"read_only,omitempty"`
	ReplyKey string `json:"reply_key,omitempty"`
	Password string `json:"password,omitempty"` // the sealed password, base64: only its requester and the worker can open it
	// KeepOldFor is reset_password's keep_old_for, as wire.FormatKeepOld
	// writes it ("15m0s").
	KeepOldFor string `json:"keep_old_for,omitempty"`
	After      string `json:"after,omitempty"`
	Limit      int    `json:"limit,omitempty"`
}

// run publishes one job and returns its result; a result with status error
// is returned as an *Error. repeated reports that the jobs stream already
// held the job id (a repeated call), so the result is an earlier call's.
func (c *Client) run(ctx context.Context, target string, op wire.Op, body jobBody) (res *wire.Result, repeated bool, err error) {
	resultSubject := wire.ResultSubject(c.prefix, target, body.ID)
	// Subscribe first: a result published between the publish and the
	// subscription would otherwise be missed.
	ch := make(chan *nats.Msg, 4)
	sub, err := c.nc.ChanSubscribe(resultSubject, ch)
	if err != nil {
		return nil, false, fmt.Errorf("client: subscribe to %s: %w", resultSubject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	data, err := json.Marshal(body)
	if err != nil {
		return nil, false, fmt.Errorf("client: encode job: %w", err)
	}
	msg := nats.NewMsg(c.prefix + ".jobs." + target + "." + string(op))
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, body.ID)
	ack, err := c.js.PublishMsg(ctx, msg)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
			return nil, false, fmt.Errorf("client: publish job %s: %w (no jobs stream takes %s: has a worker with prefix %q started on this NATS?): %w",
				body.ID, ErrNoWorker, msg.Subject, c.prefix, err)
		}
		return nil, false, fmt.Errorf("client: publish job %s: %w", body.ID, err)
	}

	ticker := time.NewTicker(resultCheckInterval)
	defer ticker.Stop()
	if ack.Duplicate {
		// The stream already held this id: its result may be stored.
		if raw, ok := c.storedResult(ctx, resultSubject); ok {
			res, err := decodeResult(raw, body.ID)
			return res, true, err
		}
	}
	for {
		select {
		case m := <-ch:
			res, err := decodeResult(m.Data, body.ID)
			return res, ack.Duplicate, err
		case <-ticker.C:
			if raw, ok := c.storedResult(ctx, resultSubject); ok {
				res, err := decodeResult(raw, body.ID)
				return res, ack.Duplicate, err
			}
		case <-ctx.Done():
			return nil, ack.Duplicate, fmt.Errorf("client: %w: job %s on target %q: %w", ErrNoResult, body.ID, target, ctx.Err())
		}
	}
}

// storedResult reads the result kept in the results stream, if any. Any
// failure reads as "not there yet": the caller keeps waiting.
func (c *Client) storedResult(ctx context.Context, subject string) ([]byte, bool) {
	data, found, err := c.directGet(ctx, c.results, subject)
	if err != nil || !found {
		return nil, false
	}
	return data, true
}

// directGet reads the last message on subject in stream with a direct get
// addressed by subject: the one form an orchestrator's own account imports,
// scoped to its targets' subjects. found is false when there is none.
func (c *Client) directGet(ctx context.Context, stream, subject string) (data []byte, found bool, err error) {
	msg, err := c.nc.RequestWithContext(ctx, c.apiPrefix+".DIRECT.GET."+stream+"."+subject, nil)
	if err != nil {
		return nil, false, err
	}
	// A found message carries the stream's headers, which the server
	// appends last; an answer without them is a status.
	if seq := msg.Header.Values(jetstream.SequenceHeader); len(seq) > 0 {
		return msg.Data, true, nil
	}
	switch status := msg.Header.Get("Status"); status {
	case "404":
		return nil, false, nil
	case "":
		return nil, false, errors.New("the direct get's answer is not a stored message")
	default:
		return nil, false, fmt.Errorf("the direct get was answered %s %s", status, msg.Header.Get("Description"))
	}
}

func decodeResult(raw []byte, id string) (*wire.Result, error) {
	var res wire.Result
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, fmt.Errorf("client: the result of job %s does not decode: %w", id, err)
	}
	switch res.Status {
	case wire.StatusOK:
		return &res, nil
	case wire.StatusError:
		if res.Error == nil {
			return nil, &Error{Code: CodeInternal, Message: "the worker answered status error without an error", JobID: id}
		}
		return nil, fromJobs(res.Error, id)
	}
	return nil, fmt.Errorf("client: the result of job %s has status %q", id, res.Status)
}

// takeSecret reads a generated password from the vault: Get, open with the
// worker's key as sender, check the job id, Purge.
func (c *Client) takeSecret(ctx context.Context, requester nkeys.KeyPair, workerKey, jobID string, s *wire.Secret) (secret.Secret, error) {
	keySubject := "$KV." + s.Bucket + "." + s.Key
	sealed, found, err := c.directGet(ctx, "KV_"+s.Bucket, keySubject)
	if err == nil && !found {
		return secret.Secret{}, fmt.Errorf("client: job %s: %w (vault key %s, expiry %s)", jobID, ErrSecretGone, s.Key,
			s.ExpiresAt.Format(time.RFC3339))
	}
	if err != nil {
		return secret.Secret{}, fmt.Errorf("client: job %s: %w: read vault key %s: %w", jobID, ErrSecretUnread, s.Key, err)
	}
	if len(sealed) == 0 {
		// A delete or purge marker: the entry was read and purged already.
		return secret.Secret{}, fmt.Errorf("client: job %s: %w (vault key %s was purged)", jobID, ErrSecretGone, s.Key)
	}
	pw, err := c.open(ctx, requester, workerKey, sealed, jobID)
	if err != nil {
		return secret.Secret{}, fmt.Errorf("client: job %s: %w: %w", jobID, ErrSecretUnread, err)
	}
	// The entry is sealed to this call's one-time key, which is dropped on
	// return, so a failed purge leaves nothing anyone can open: it only
	// lingers until the bucket's TTL. The password in force is returned
	// either way. A purge is a publish on the key's subject (in an account
	// of its own, the worker's purge service answers it).
	purge := nats.NewMsg(keySubject)
	purge.Header.Set("KV-Operation", "PURGE")
	purge.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	_, _ = c.nc.RequestMsgWithContext(ctx, purge)
	return pw, nil
}

// open opens a generated password. When a discovered worker key fails, the
// key is asked again once: the worker may have a new key.
func (c *Client) open(ctx context.Context, requester nkeys.KeyPair, workerKey string, sealed []byte, jobID string) (secret.Secret, error) {
	pw, err := openGenerated(requester, workerKey, sealed, jobID)
	if err == nil || c.pinned != "" {
		return pw, err
	}
	c.forgetKey(workerKey)
	fresh, kerr := c.key(ctx)
	if kerr != nil || fresh == workerKey {
		return secret.Secret{}, err
	}
	return openGenerated(requester, fresh, sealed, jobID)
}
