package oldpasswords

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/dbusers/dbusers/internal/jobs"
	"github.com/dbusers/dbusers/wire"
)

// Settings tune an Expirer.
type Settings struct {
	// Prefix is the subject prefix P: discards go to
	// "P.jobs.<target>.user.discard_old_password".
	Prefix string
	// DuplicateWindow is the jobs stream's duplicate window: a discard's
	// id stays the same for that long, so the stream keeps one copy of
	// what every process publishes, and changes after it, so a discard
	// that failed is sent again. The contract's floor, 2 minutes, when
	// zero.
	DuplicateWindow time.Duration
	// Every is the pause between passes over the entries; DefaultEvery
	// when zero.
	Every  time.Duration
	Logger *zap.Logger
}

// DefaultEvery is the pause between an Expirer's passes: an old password
// ends within it (and the time its discard job waits behind the target's
// other jobs) of its time.
const DefaultEvery = 5 * time.Second

// minDuplicateWindow is contract §1's floor of the jobs stream's window.
const minDuplicateWindow = 2 * time.Minute

// publishChunk bounds the discards in flight at once (asynchronous
// publishes awaiting their acks).
const publishChunk = 256

// Expirer ends old passwords at their time: it watches the whole schedule
// bucket, keeps its entries in memory, and on each pass publishes a
// discard_old_password job for every entry whose time has passed. Every
// process runs one; they agree on each discard's id (discardID), so the
// jobs stream's duplicate window keeps one job per entry per window of
// them all. A discard that succeeds clears its entry (Schedule.Clear),
// and the Expirers forget it.
type Expirer struct {
	js    jetstream.JetStream
	kv    jetstream.KeyValue
	s     Settings
	log   *zap.Logger
	every time.Duration

	mu      sync.Mutex
	entries map[string]*entry // by key; nil until the first watch is in
}

// entry is what an Expirer knows of one key.
type entry struct {
	target, username string
	until            time.Time
	revision         uint64
	// sent is the id of the last discard this process published for it:
	// it is not sent again while the id stays the same.
	sent string
}

// NewExpirer returns an Expirer of the entries in kv, publishing over js.
func NewExpirer(js jetstream.JetStream, kv jetstream.KeyValue, s Settings) *Expirer {
	if s.DuplicateWindow <= 0 {
		s.DuplicateWindow = minDuplicateWindow
	}
	e := &Expirer{js: js, kv: kv, s: s, log: s.Logger, every: s.Every}
	if e.log == nil {
		e.log = zap.NewNop()
	}
	if e.every <= 0 {
		e.every = DefaultEvery
	}
	return e
}

// Run watches and publishes until ctx ends. Its first pass comes as soon
// as the bucket's present entries are read: one whose time passed while no
// process ran is ended at once.
func (e *Expirer) Run(ctx context.Context) {
	loaded := make(chan struct{}, 1)
	var wg sync.WaitGroup
	wg.Go(func() { e.watch(ctx, loaded) })
	defer wg.Wait()
	t := time.NewTicker(e.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-loaded:
		case <-t.C:
		}
		e.Pass(ctx)
	}
}

// watch keeps e.entries in step with the bucket, watching it anew after a
// failure, and signals loaded each time the present entries are in.
func (e *Expirer) watch(ctx context.Context, loaded chan<- struct{}) {
	for {
		err := e.watchOnce(ctx, loaded)
		if ctx.Err() != nil {
			return
		}
		e.log.Warn("watch the old password schedule", zap.String("bucket", e.kv.Bucket()), zap.Error(err))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// watchOnce reads the bucket's present entries, then its changes, until
// the watch fails or ctx ends.
func (e *Expirer) watchOnce(ctx context.Context, loaded chan<- struct{}) error {
	w, err := e.kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	// The present entries go into a fresh map, which replaces the old one
	// once complete: a key removed while no watch ran is forgotten.
	fresh := make(map[string]*entry)
	for {
		var kve jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return ctx.Err()
		case u, ok := <-w.Updates():
			if !ok {
				return errors.New("the watch ended")
			}
			kve = u
		}
		if kve == nil { // the present entries are in
			e.replace(fresh)
			fresh = nil
			select {
			case loaded <- struct{}{}:
			default:
			}
			continue
		}
		if fresh != nil {
			e.apply(fresh, kve)
			continue
		}
		e.mu.Lock()
		e.apply(e.entries, kve)
		e.mu.Unlock()
	}
}

// replace makes fresh the known entries, keeping what was sent for those
// that did not change.
func (e *Expirer) replace(fresh map[string]*entry) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, n := range fresh {
		if old, ok := e.entries[k]; ok && old.revision == n.revision {
			n.sent = old.sent
		}
	}
	e.entries = fresh
}

// apply records one change of the bucket in m.
func (e *Expirer) apply(m map[string]*entry, kve jetstream.KeyValueEntry) {
	key := kve.Key()
	if kve.Operation() != jetstream.KeyValuePut {
		delete(m, key)
		return
	}
	target, username, ok := splitKey(key)
	v, err := decodeValue(kve.Value())
	if !ok || err != nil {
		// Not written by the worker: nothing to end.
		delete(m, key)
		e.log.Warn("an old password entry that is not one", zap.String("bucket", e.kv.Bucket()),
			zap.String("key", key), zap.Uint64("revision", kve.Revision()), zap.NamedError("why", err))
		return
	}
	m[key] = &entry{target: target, username: username, until: v.Until, revision: kve.Revision()}
}

// discard is one discard_old_password job to publish.
type discard struct {
	key, target, username string
	until                 time.Time
	revision              uint64
	id                    string
}

// Pass publishes a discard job for each known entry whose time has passed
// and that this process has not sent in the current window, and returns
// how many the jobs stream accepted (new or duplicate).
func (e *Expirer) Pass(ctx context.Context) int {
	now := time.Now()
	var due []discard
	e.mu.Lock()
	for k, n := range e.entries {
		if now.Before(n.until) {
			continue
		}
		id := discardID(n.revision, n.until, now, e.s.DuplicateWindow)
		if n.sent == id {
			continue
		}
		due = append(due, discard{key: k, target: n.target, username: n.username, until: n.until, revision: n.revision, id: id})
	}
	e.mu.Unlock()
	slices.SortFunc(due, func(a, b discard) int { return a.until.Compare(b.until) })
	accepted := 0
	for chunk := range slices.Chunk(due, publishChunk) {
		accepted += e.publish(ctx, chunk)
	}
	return accepted
}

// discardID is the message id of the discard of the entry at revision
// (the bucket's sequence: the same in every process) in the n-th whole
// duplicate window after until: "oldpw-<revision>-<n>", at most 47
// characters of the contract's id grammar.
func discardID(revision uint64, until, now time.Time, window time.Duration) string {
	return fmt.Sprintf("oldpw-%d-%d", revision, int64(now.Sub(until)/window))
}

// jobBody is a discard_old_password job's body.
type jobBody struct {
	ID       string `json:"id"`
	Username string `json:"username"`
}

// publish sends the discards of chunk at once, awaits their acks, and
// records each accepted one as sent.
func (e *Expirer) publish(ctx context.Context, chunk []discard) int {
	futures := make([]jetstream.PubAckFuture, len(chunk))
	errs := make([]error, len(chunk))
	for i, d := range chunk {
		body, _ := json.Marshal(jobBody{ID: d.id, Username: d.username})
		msg := nats.NewMsg(e.s.Prefix + ".jobs." + d.target + "." + string(wire.OpDiscardOldPassword))
		msg.Data = body
		msg.Header.Set(jetstream.MsgIDHeader, d.id)
		msg.Header.Set(jobs.ScheduledDiscardHeader, d.until.UTC().Format(time.RFC3339Nano))
		futures[i], errs[i] = e.js.PublishMsgAsync(msg)
	}
	wait, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	accepted := 0
	for i, d := range chunk {
		var ack *jetstream.PubAck
		if errs[i] == nil {
			ack, errs[i] = awaitAck(wait, futures[i])
		}
		fields := []zap.Field{zap.String("target", d.target), zap.String("username", d.username),
			zap.String("job_id", d.id), zap.Time("until", d.until)}
		if errs[i] != nil {
			if ctx.Err() == nil {
				e.log.Warn("publish the discard of an old password", append(fields, zap.Error(errs[i]))...)
			}
			continue
		}
		accepted++
		e.mu.Lock()
		if n := e.entries[d.key]; n != nil && n.revision == d.revision {
			n.sent = d.id
		}
		e.mu.Unlock()
		if ack.Duplicate {
			e.log.Debug("discard of an old password already published", fields...)
		} else {
			e.log.Info("discard of an old password published", fields...)
		}
	}
	return accepted
}

// awaitAck returns a publish's ack, or why there is none by the time ctx
// ends.
func awaitAck(ctx context.Context, f jetstream.PubAckFuture) (*jetstream.PubAck, error) {
	select { // an ack already in wins over an ended ctx
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	default:
	}
	select {
	case ack := <-f.Ok():
		return ack, nil
	case err := <-f.Err():
		return nil, err
	case <-ctx.Done():
		return nil, fmt.Errorf("no ack: %w", ctx.Err())
	}
}
