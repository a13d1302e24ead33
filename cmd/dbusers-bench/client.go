package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// natsSide is the benchmark's orchestrator: it publishes jobs the way the
// contract says (id also in Nats-Msg-Id) and reads results as they are
// published.
type natsSide struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	prefix  string
	pubErrs atomic.Int64
	lastErr atomic.Value // the last async publish error, a string
}

// connectNATS connects to url with an async publish window of window
// unacknowledged jobs.
func connectNATS(url, prefix string, window int) (*natsSide, error) {
	nc, err := nats.Connect(url, nats.Name("dbusers-bench"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	n := &natsSide{nc: nc, prefix: prefix}
	n.js, err = jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(window),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			n.pubErrs.Add(1)
			n.lastErr.Store(err.Error())
		}))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return n, nil
}

func (n *natsSide) close() { n.nc.Close() }

// workerKey asks P.info until a worker answers or ctx ends, and returns the
// worker's curve public key.
func (n *natsSide) workerKey(ctx context.Context) (string, error) {
	for {
		msg, err := n.nc.Request(n.prefix+".info", nil, time.Second)
		if err == nil {
			var info struct {
				XKey string `json:"xkey"`
			}
			if err := json.Unmarshal(msg.Data, &info); err != nil || info.XKey == "" {
				return "", fmt.Errorf("info endpoint answered %q", msg.Data)
			}
			return info.XKey, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no worker answers %s.info: %w", n.prefix, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// job is one prepared job message.
type job struct {
	subject string
	id      string
	body    []byte
}

func (n *natsSide) jobSubject(target, op string) string {
	return n.prefix + ".jobs." + target + ".user." + op
}

// resetJob is a reset_password job with a generated password.
func (n *natsSide) resetJob(target, id, username, replyKey string) job {
	return job{subject: n.jobSubject(target, "reset_password"), id: id,
		body: fmt.Appendf(nil, `{"id":%q,"username":%q,"reply_key":%q}`, id, username, replyKey)}
}

// resetKeepOldJob is a reset_password job with a generated password that
// keeps the old one working for keep.
func (n *natsSide) resetKeepOldJob(target, id, username, replyKey, keep string) job {
	return job{subject: n.jobSubject(target, "reset_password"), id: id,
		body: fmt.Appendf(nil, `{"id":%q,"username":%q,"reply_key":%q,"keep_old_for":%q}`, id, username, replyKey, keep)}
}

// createJob is a read-write create job with a generated password.
func (n *natsSide) createJob(target, id, username, replyKey string) job {
	return job{subject: n.jobSubject(target, "create"), id: id,
		body: fmt.Appendf(nil, `{"id":%q,"username":%q,"reply_key":%q}`, id, username, replyKey)}
}

// deleteJob is a delete job.
func (n *natsSide) deleteJob(target, id, username string) job {
	return job{subject: n.jobSubject(target, "delete"), id: id,
		body: fmt.Appendf(nil, `{"id":%q,"username":%q}`, id, username)}
}

// listJob is one page of a list job.
func (n *natsSide) listJob(target, id, after string, limit int) job {
	body := fmt.Appendf(nil, `{"id":%q,"limit":%d}`, id, limit)
	if after != "" {
		body = fmt.Appendf(nil, `{"id":%q,"after":%q,"limit":%d}`, id, after, limit)
	}
	return job{subject: n.jobSubject(target, "list"), id: id, body: body}
}

func (j job) msg() *nats.Msg {
	return &nats.Msg{Subject: j.subject, Data: j.body, Header: nats.Header{jetstream.MsgIDHeader: []string{j.id}}}
}

// resultsSubject is the filter of one target's results.
func (n *natsSide) resultsSubject(target string) string {
	return n.prefix + ".results." + target + ".>"
}

// bulkOutcome is what a bulk run saw.
type bulkOutcome struct {
	wall       time.Duration // first publish to last result
	published  time.Duration // first publish to the last publish acknowledged
	lastResult time.Time
	ok         int
	failed     int
	failures   []string // the first few failed results
}

// bulkHooks are called at the edges of a bulk run.
type bulkHooks struct {
	// started is called just before the first job is published.
	started func()
	// published is called once the jobs stream acknowledged every job.
	published func() error
	// deadline, when set, ends the wait for results early: runBulk then
	// returns errDeadline with the outcome of the results received.
	deadline time.Time
}

// errDeadline is returned by runBulk when bulkHooks.deadline passed first.
var errDeadline = errors.New("deadline reached before every result")

// resultIndex tracks which jobs of a run have their result.
type resultIndex struct {
	mu       sync.Mutex
	index    map[string]int
	seen     []bool
	got      int
	ok       int
	failures []string
	failed   int
	last     time.Time
	done     chan struct{}
}

func newResultIndex(jobs []job) *resultIndex {
	r := &resultIndex{index: make(map[string]int, len(jobs)), seen: make([]bool, len(jobs)), done: make(chan struct{})}
	for i, j := range jobs {
		r.index[j.id] = i
	}
	return r
}

var statusOK = []byte(`"status":"ok"`)

// add records one result message; repeats (a stored result published
// again) count once.
func (r *resultIndex) add(m *nats.Msg) {
	id := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	r.mu.Lock()
	defer r.mu.Unlock()
	i, ok := r.index[id]
	if !ok || r.seen[i] {
		return
	}
	r.seen[i] = true
	r.got++
	r.last = time.Now()
	if bytes.Contains(m.Data, statusOK) {
		r.ok++
	} else {
		r.failed++
		if len(r.failures) < 5 {
			r.failures = append(r.failures, string(m.Data))
		}
	}
	if r.got == len(r.seen) {
		close(r.done)
	}
}

// runBulk subscribes to the results of targets, publishes every job
// asynchronously (at most the window unacknowledged) and waits until each
// job has its result. It fails when no result comes for stall.
func (n *natsSide) runBulk(ctx context.Context, jobs []job, targets []string, stall time.Duration, hooks bulkHooks) (bulkOutcome, error) {
	var out bulkOutcome
	idx := newResultIndex(jobs)
	for _, t := range targets {
		sub, err := n.nc.Subscribe(n.resultsSubject(t), idx.add)
		if err != nil {
			return out, fmt.Errorf("subscribe to results: %w", err)
		}
		_ = sub.SetPendingLimits(-1, -1)
		defer func() { _ = sub.Unsubscribe() }()
	}
	if err := n.nc.FlushTimeout(10 * time.Second); err != nil {
		return out, fmt.Errorf("flush subscriptions: %w", err)
	}
	errsBefore := n.pubErrs.Load()
	if hooks.started != nil {
		hooks.started()
	}
	start := time.Now()
	for _, j := range jobs {
		if _, err := n.js.PublishMsgAsync(j.msg(), jetstream.WithStallWait(time.Minute)); err != nil {
			return out, fmt.Errorf("publish job %s: %w", j.id, err)
		}
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
	select {
	case <-n.js.PublishAsyncComplete():
	case <-ctx.Done():
		return out, ctx.Err()
	}
	out.published = time.Since(start)
	if e := n.pubErrs.Load() - errsBefore; e > 0 {
		last, _ := n.lastErr.Load().(string)
		return out, fmt.Errorf("%d of %d jobs were not accepted by the jobs stream (last error: %s)", e, len(jobs), last)
	}
	if hooks.published != nil {
		if err := hooks.published(); err != nil {
			return out, err
		}
	}
	werr := idx.wait(ctx, stall, hooks.deadline)
	if werr != nil && !errors.Is(werr, errDeadline) {
		return out, werr
	}
	idx.mu.Lock()
	out.wall, out.lastResult = idx.last.Sub(start), idx.last
	out.ok, out.failed, out.failures = idx.ok, idx.failed, idx.failures
	idx.mu.Unlock()
	return out, werr
}

// wait waits until every result is in, ctx ends, no result came for stall,
// or deadline (when not zero) passed.
func (r *resultIndex) wait(ctx context.Context, stall time.Duration, deadline time.Time) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastGot, lastChange := -1, time.Now()
	for {
		select {
		case <-r.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			r.mu.Lock()
			got := r.got
			r.mu.Unlock()
			if !deadline.IsZero() && time.Now().After(deadline) {
				return fmt.Errorf("%w: %d of %d", errDeadline, got, len(r.seen))
			}
			if got != lastGot {
				lastGot, lastChange = got, time.Now()
			} else if time.Since(lastChange) > stall {
				return fmt.Errorf("%d of %d results after no progress for %s", got, len(r.seen), stall)
			}
		}
	}
}

// runSequential publishes the jobs one at a time, each after the previous
// one's result arrived, and returns each job's time from publish to result.
// The first warm jobs are run but not timed.
func (n *natsSide) runSequential(ctx context.Context, target string, jobs []job, warm int) ([]time.Duration, error) {
	results := make(chan *nats.Msg, 64)
	sub, err := n.nc.ChanSubscribe(n.resultsSubject(target), results)
	if err != nil {
		return nil, fmt.Errorf("subscribe to results: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := n.nc.FlushTimeout(10 * time.Second); err != nil {
		return nil, fmt.Errorf("flush subscription: %w", err)
	}
	lat := make([]time.Duration, 0, len(jobs))
	for i, j := range jobs {
		start := time.Now()
		m, err := n.roundTrip(ctx, j, results)
		if err != nil {
			return nil, err
		}
		d := time.Since(start)
		if !bytes.Contains(m.Data, statusOK) {
			return nil, fmt.Errorf("job %s failed: %s", j.id, m.Data)
		}
		if i >= warm {
			lat = append(lat, d)
		}
	}
	return lat, nil
}

// roundTrip publishes j and waits for its result on results.
func (n *natsSide) roundTrip(ctx context.Context, j job, results <-chan *nats.Msg) (*nats.Msg, error) {
	paf, err := n.js.PublishMsgAsync(j.msg())
	if err != nil {
		return nil, fmt.Errorf("publish job %s: %w", j.id, err)
	}
	want := "." + j.id
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case m := <-results:
			if strings.HasSuffix(m.Subject, want) {
				return m, nil
			}
		case err := <-paf.Err():
			return nil, fmt.Errorf("publish job %s: %w", j.id, err)
		case <-timeout.C:
			return nil, fmt.Errorf("no result for job %s in 30s", j.id)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// listAll pages through target's accounts with list jobs of limit each, as
// a client does (decoding each page to find the next cursor), and returns
// the total time, the accounts seen and the pages.
func (n *natsSide) listAll(ctx context.Context, target, idPrefix string, limit int) (time.Duration, int, int, error) {
	results := make(chan *nats.Msg, 8)
	sub, err := n.nc.ChanSubscribe(n.resultsSubject(target), results)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("subscribe to results: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := n.nc.FlushTimeout(10 * time.Second); err != nil {
		return 0, 0, 0, fmt.Errorf("flush subscription: %w", err)
	}
	var page struct {
		Status string            `json:"status"`
		Users  []json.RawMessage `json:"users"`
		Next   string            `json:"next"`
		Error  *struct{ Code, Message string }
	}
	accounts, pages, after := 0, 0, ""
	start := time.Now()
	for {
		j := n.listJob(target, idPrefix+"-"+strconv.Itoa(pages), after, limit)
		m, err := n.roundTrip(ctx, j, results)
		if err != nil {
			return 0, 0, 0, err
		}
		page.Users, page.Next, page.Error = nil, "", nil
		if err := json.Unmarshal(m.Data, &page); err != nil {
			return 0, 0, 0, fmt.Errorf("list result: %w", err)
		}
		if page.Status != "ok" {
			return 0, 0, 0, fmt.Errorf("list job %s failed: %s", j.id, m.Data)
		}
		accounts += len(page.Users)
		pages++
		if page.Next == "" {
			return time.Since(start), accounts, pages, nil
		}
		after = page.Next
	}
}

// deliveries returns how many deliveries the consumers of the jobs stream
// have made so far (each consumer's delivered sequence, which counts
// redeliveries too); ok is false when it could not be read.
func (n *natsSide) deliveries(ctx context.Context) (total uint64, ok bool) {
	jobsName, _, _, _ := wire.Names(n.prefix)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := n.js.Stream(ctx, jobsName)
	if err != nil {
		return 0, false
	}
	lister := st.ListConsumers(ctx)
	for info := range lister.Info() {
		total += info.Delivered.Consumer
	}
	return total, lister.Err() == nil
}

// openSecret reads a generated password from the vault and opens it with
// the requester's key, as a client does (without purging it).
func (n *natsSide) openSecret(ctx context.Context, target, id string, requester nkeys.KeyPair, workerPub string) (secret.Secret, error) {
	_, _, bucket, _ := wire.Names(n.prefix)
	kv, err := n.js.KeyValue(ctx, bucket)
	if err != nil {
		return secret.Secret{}, fmt.Errorf("vault bucket: %w", err)
	}
	e, err := kv.Get(ctx, wire.VaultKey(target, id))
	if err != nil {
		return secret.Secret{}, fmt.Errorf("vault entry of job %s: %w", id, err)
	}
	pw, err := wire.OpenGeneratedPassword(requester, workerPub, e.Value(), id)
	if err != nil {
		return secret.Secret{}, fmt.Errorf("open the sealed password of job %s: %w", id, err)
	}
	return pw, nil
}
