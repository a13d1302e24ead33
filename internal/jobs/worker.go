package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/internal/streams"
	"github.com/dbusers/dbusers/secret"
)

// Ops is what the worker needs from one target's MySQL side.
type Ops interface {
	// Create and ResetPassword wait for ready right before they set the
	// password, so the worker can store the sealed password meanwhile.
	Create(ctx context.Context, username string, password secret.Secret, readOnly bool, intent mysqlops.Intent, ready mysqlops.Ready) error
	ResetPassword(ctx context.Context, username string, password secret.Secret, ready mysqlops.Ready) (mysqlops.Account, error)
	Delete(ctx context.Context, username string, intent mysqlops.Intent) (mysqlops.Account, error)
	List(ctx context.Context, after string, limit int) ([]mysqlops.Account, string, error)
	// Abandon drops a possibly half-made account of a create that gives up.
	Abandon(ctx context.Context, username string, intent mysqlops.Intent) error
}

// Sealer opens chosen passwords and seals generated ones (the worker's
// curve key).
type Sealer interface {
	OpenPassword(sealed secret.Secret, senderPub, jobID string) (secret.Secret, error)
	SealPassword(jobID string, password secret.Secret, recipientPub string) ([]byte, error)
}

// SecretStore keeps sealed generated passwords for their requester.
type SecretStore interface {
	Put(ctx context.Context, target, jobID string, sealed []byte) (key string, expiresAt time.Time, err error)
	Bucket() string
}

// ResultStore publishes results and finds one already published.
type ResultStore interface {
	Publish(ctx context.Context, subject string, data []byte) error
	// PublishNew publishes data on subject unless a result is stored
	// there already, which it reports with exists=true.
	PublishNew(ctx context.Context, subject string, data []byte) (exists bool, err error)
	// Lookup returns the stored result on subject, or ok=false.
	Lookup(ctx context.Context, subject string) (data []byte, ok bool, err error)
}

// JobsStream is what the worker reads and erases in the jobs stream
// besides consuming it.
type JobsStream interface {
	// First returns the stream sequence of the oldest job at or after
	// sequence from whose stored subject matches filter, or 0 when none.
	First(ctx context.Context, filter string, from uint64) (uint64, error)
	// Erase deletes a job and overwrites its bytes on disk: a sealed
	// password must not stay in the store's files after its job ends.
	Erase(ctx context.Context, seq uint64) error
}

// Intents records which job last started to create or drop a username, so
// that a retried job recognizes its own half-done work.
type Intents interface {
	Get(ctx context.Context, key string) (jobID string, err error) // "" when absent
	Put(ctx context.Context, key, jobID string) error
}

// Observer is told what the worker does, for metrics. Its methods must not
// block.
type Observer interface {
	// JobDone is called once per job answered: outcome is "ok", "error"
	// or "already_done" (answered from its stored result); code is the
	// error code of an "error".
	JobDone(op Op, outcome string, code Code, d time.Duration)
	// Retry is called before each retry of a job, with the error's class.
	Retry(op Op, class string)
	// MySQLError is called for every failed attempt that MySQL failed,
	// with the error's class.
	MySQLError(class string)
	// HandedBack is called when a job goes back to the stream unfinished.
	HandedBack(reason string)
}

type nopObserver struct{}

func (nopObserver) JobDone(Op, string, Code, time.Duration) {}
func (nopObserver) Retry(Op, string)                        {}
func (nopObserver) HandedBack(string)                       {}
func (nopObserver) MySQLError(string)                       {}

// Config is what a Worker is built from.
type Config struct {
	Prefix  string
	Targets map[string]Ops
	Keys    Sealer
	Secrets SecretStore
	Results ResultStore
	Intents Intents
	// Jobs, when set, makes each target's jobs wait for the target's
	// older jobs still in the stream (held by a process that died, or
	// waiting for redelivery), so order holds across processes, and erases
	// jobs that carried a sealed password once they are answered.
	Jobs JobsStream
	// StoreEncrypted says the jobs stream's store is encrypted at rest.
	// Jobs that carried a password are then deleted by their ack like any
	// other instead of erased: a deleted job stays readable only to
	// whoever holds the store key, as every job in the stream is. An
	// erase rewrites the job's whole block file under the stream's lock
	// (about a millisecond per job, longer as the block grows), so a flood
	// of jobs with a password field would hold up every target's jobs.
	StoreEncrypted   bool
	GeneratePassword func() (secret.Secret, error)
	// RetryBudget is how long a job's transient MySQL faults are retried,
	// counted from when this worker received it.
	RetryBudget time.Duration
	// AckWait is the consumer's ack wait; queued and running jobs are
	// kept alive every two thirds of it.
	AckWait time.Duration
	// ShutdownGrace bounds how long a running job may go on after Run's
	// context ends; then its statement is cancelled and the job handed back.
	ShutdownGrace time.Duration
	Logger        *zap.Logger
	// Observer receives metrics events; none when nil.
	Observer Observer
	// Pacer, shared by the process's workers, paces refused jobs while
	// valid ones run; each worker has its own when nil.
	Pacer *Pacer
	// Window is how many jobs the consumer delivers without an ack (its
	// MaxAckPending); streams.MaxAckPending when zero.
	Window int
}

// Worker takes jobs from the jobs consumer and runs each target's jobs in
// order, one at a time, targets in parallel.
type Worker struct {
	cfg Config
	log *zap.Logger

	mu    sync.Mutex
	lanes map[string]*lane
	// order is, per configured target, what this worker knows of the
	// target's jobs in the stream (see targetOrder).
	order    map[string]*targetOrder
	stopping bool
	// held counts the deliveries queued or running in the lanes: the
	// jobs of the consumer's window that this worker holds.
	held    int
	running sync.WaitGroup

	stopCtx  context.Context // ends when shutdown starts: no new attempts
	stopNow  context.CancelFunc
	hardCtx  context.Context // ends after the grace period: statements cancelled
	hardStop context.CancelFunc
}

// lane is one target's queue of jobs, in stream order.
type lane struct {
	key     string
	queue   []*delivery
	current *delivery
	// unreachable is the error of the lane's last attempt when it proved
	// MySQL unreachable (nothing sent), and unreachableAt when it failed;
	// nil after an attempt that reached it. Only the lane's goroutine
	// uses them.
	unreachable   error
	unreachableAt time.Time
}

// unreachableFresh is how long an attempt that found a target unreachable
// stands for the lane's next jobs whose retry budget has run out: they
// fail at once instead of trying again. It is the longest wait between
// two retries, so a target is still tried at least that often.
const unreachableFresh = 5 * time.Second

type delivery struct {
	msg      jetstream.Msg
	received time.Time
	// extended is when the server last heard that this job is being
	// worked on (its delivery, or the last keep-alive); guarded by w.mu.
	extended time.Time
	lane     *lane // nil in unit tests that call process directly
	// pre is this job's reads, started while the job ahead of it in the
	// lane ran; nil when none were.
	pre *preflight
	// acked is set once this job was acknowledged.
	acked atomic.Bool
	// inTurn is set once the order check found no older job of the
	// target in the stream: only then does its ack raise the target's
	// floor. Only the lane's goroutine uses it.
	inTurn bool
}

// targetOrder is what a worker knows of one target's jobs in the stream,
// so that an order check can start late and skip this worker's own acks,
// which the stream applies asynchronously.
//
// A job answered without its order check (refused from the job alone, or
// answered from its stored result) says nothing about older jobs: one may
// still be pending, handed back by this worker or held by another process
// since a partition changed hands. Its ack is only remembered, so that a
// later check does not take it for a pending job; it never lets a later
// check start past an older pending job.
type targetOrder struct {
	// floor: no job of the target at or below it is in the stream but
	// ones this worker acknowledged. Seqs only leave the stream, so what
	// a check finds raises it for good.
	floor uint64
	// acked are jobs above floor this worker acknowledged out of turn.
	acked map[uint64]struct{}
}

// maxAckedOutOfTurn bounds targetOrder.acked for a target whose jobs are
// all refused (a flood): past it, the oldest half is forgotten. A
// forgotten ack the stream has not applied yet (after thousands more)
// only makes a check hand its job back for a second.
const maxAckedOutOfTurn = 4096

// raise records that no job of the target at or below seq is in the
// stream but this worker's acked ones.
func (o *targetOrder) raise(seq uint64) {
	if seq <= o.floor {
		return
	}
	o.floor = seq
	for s := range o.acked {
		if s <= seq {
			delete(o.acked, s)
		}
	}
}

// ackedOutOfTurn remembers a job acked without its order check.
func (o *targetOrder) ackedOutOfTurn(seq uint64) {
	if seq <= o.floor {
		return
	}
	if o.acked == nil {
		o.acked = map[uint64]struct{}{}
	}
	o.acked[seq] = struct{}{}
	if len(o.acked) > maxAckedOutOfTurn {
		seqs := slices.Sorted(maps.Keys(o.acked))
		for _, s := range seqs[:len(seqs)/2] {
			delete(o.acked, s)
		}
	}
}

// targetOrder returns the order record of a lane's target, or nil for a
// target this worker does not serve (its jobs are all refused, and a
// record per unknown target name would grow without bound). w.mu held.
func (w *Worker) targetOrder(key string) *targetOrder {
	if _, ok := w.cfg.Targets[key]; !ok {
		return nil
	}
	o := w.order[key]
	if o == nil {
		o = &targetOrder{}
		w.order[key] = o
	}
	return o
}

// preflight holds the two reads a job needs before it may run (its stored
// result and the order check), made while the job ahead of it in its lane
// is still running, so that a lane of many jobs does not wait for them
// between jobs.
type preflight struct {
	done    chan struct{}
	subject string // the results subject looked up
	// The stored-result lookup.
	stored []byte
	found  bool
	err    error
	// The order check, counted from just after the job ahead: it holds
	// only if that job is acknowledged (aheadAcked), which it is not yet
	// when the check runs. Only the flag is kept, not the job: a chain of
	// deliveries, each holding the one before, would keep every job of a
	// lane in memory.
	aheadAcked *atomic.Bool
	aheadSeq   uint64
	first      uint64
	firstErr   error
}

// NewWorker checks cfg and returns a Worker.
func NewWorker(cfg Config) (*Worker, error) {
	switch {
	case cfg.Prefix == "":
		return nil, errors.New("jobs: Prefix is required")
	case cfg.Keys == nil || cfg.Secrets == nil || cfg.Results == nil || cfg.Intents == nil:
		return nil, errors.New("jobs: Keys, Secrets, Results and Intents are required")
	case cfg.GeneratePassword == nil:
		return nil, errors.New("jobs: GeneratePassword is required")
	}
	if cfg.RetryBudget <= 0 {
		cfg.RetryBudget = 5 * time.Minute
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 20 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.Pacer == nil {
		cfg.Pacer = NewPacer(0)
	}
	if cfg.Window <= 0 {
		cfg.Window = streams.MaxAckPending
	}
	w := &Worker{cfg: cfg, log: cfg.Logger, lanes: map[string]*lane{}, order: map[string]*targetOrder{}}
	w.stopCtx, w.stopNow = context.WithCancel(context.Background())
	w.hardCtx, w.hardStop = context.WithCancel(context.Background())
	return w, nil
}

// Run consumes jobs until ctx ends, then stops taking jobs, lets running
// ones finish within the grace period and hands the rest back. It returns
// once nothing is in flight. ready, when not nil, is called once jobs are
// being taken.
func (w *Worker) Run(ctx context.Context, consumer jetstream.Consumer, ready func()) error {
	cc, err := consumer.Consume(w.dispatch,
		jetstream.PullMaxMessages(512),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			w.log.Warn("consume", zap.Error(err))
		}))
	if err != nil {
		return fmt.Errorf("consume jobs: %w", err)
	}
	if ready != nil {
		ready()
	}
	ticker := time.NewTicker(w.cfg.AckWait / keepAliveTicks)
	defer ticker.Stop()
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case <-ticker.C:
			w.keepAlive()
		}
	}

	cc.Stop()
	w.mu.Lock()
	w.stopping = true
	var handBack []*delivery
	for _, l := range w.lanes {
		handBack = append(handBack, l.queue...)
		l.queue = nil
	}
	w.held -= len(handBack)
	w.mu.Unlock()
	w.stopNow()
	for _, d := range handBack {
		_ = d.msg.Nak()
	}
	w.log.Info("stopping: waiting for running jobs", zap.Int("handed_back", len(handBack)))

	done := make(chan struct{})
	go func() { w.running.Wait(); close(done) }()
	grace := time.NewTimer(w.cfg.ShutdownGrace)
	defer grace.Stop()
	for {
		select {
		case <-done:
			w.hardStop()
			return nil
		case <-grace.C:
			w.hardStop() // cancel statements; their jobs are handed back
		case <-ticker.C:
			w.keepAlive()
		}
	}
}

// dispatch is the consumer callback: it queues the job on its target's
// lane and never blocks, so one slow target cannot stall the others.
func (w *Worker) dispatch(msg jetstream.Msg) {
	key := targetToken(w.cfg.Prefix, streams.OriginalSubject(w.cfg.Prefix, msg.Subject()))
	now := time.Now()
	d := &delivery{msg: msg, received: now, extended: now}
	w.mu.Lock()
	if w.stopping {
		w.mu.Unlock()
		_ = msg.Nak()
		return
	}
	l, ok := w.lanes[key]
	if !ok {
		l = &lane{key: key}
		w.lanes[key] = l
		w.running.Add(1)
		go w.runLane(l)
	}
	d.lane = l
	l.queue = append(l.queue, d)
	w.held++
	w.mu.Unlock()
}

// runLane processes one lane's jobs in order and ends when it is empty.
func (w *Worker) runLane(l *lane) {
	defer w.running.Done()
	for {
		w.mu.Lock()
		if len(l.queue) == 0 || w.stopping {
			delete(w.lanes, l.key)
			l.current = nil
			w.mu.Unlock()
			return
		}
		d := l.queue[0]
		l.queue[0] = nil
		l.queue = l.queue[1:]
		l.current = d
		if len(l.queue) > 0 && l.queue[0].pre == nil {
			l.queue[0].pre = w.startPreflight(l.queue[0], d)
		}
		w.mu.Unlock()
		w.process(d)
		d.pre = nil // whatever path process took, drop the reads (and the job ahead they point to)
		w.mu.Lock()
		w.held--
		w.mu.Unlock()
	}
}

// windowFilling reports whether the jobs this worker holds fill half the
// consumer's window.
func (w *Worker) windowFilling() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.held >= w.cfg.Window/2
}

// keepAliveTicks is how often per ack wait keepAlive looks at the held
// jobs.
const keepAliveTicks = 10

// keepAlive tells the server that queued and running jobs are still being
// worked on, so their ack wait does not expire while they wait their turn.
// Only jobs not heard of for two thirds of an ack wait are told: a bulk run
// holds thousands of jobs, and telling each of them every tick cost more
// NATS CPU than running them (issue 5). A job is told again at least a
// third of an ack wait, less one tick, before its deadline.
func (w *Worker) keepAlive() {
	now := time.Now()
	due := now.Add(-w.cfg.AckWait * 2 / 3)
	w.mu.Lock()
	var msgs []jetstream.Msg
	tell := func(d *delivery) {
		if d != nil && !d.extended.After(due) {
			d.extended = now
			msgs = append(msgs, d.msg)
		}
	}
	for _, l := range w.lanes {
		tell(l.current)
		for _, d := range l.queue {
			tell(d)
		}
	}
	w.mu.Unlock()
	for _, m := range msgs {
		_ = m.InProgress()
	}
}

// targetToken returns the subject token after "<prefix>.jobs.", the lane
// key and the results subject's target token even for an invalid job.
func targetToken(prefix, subject string) string {
	rest, ok := strings.CutPrefix(subject, prefix+".jobs.")
	if !ok {
		return "_"
	}
	tok, _, _ := strings.Cut(rest, ".")
	if tok == "" {
		return "_"
	}
	return tok
}

// process runs one job to its terminal result, or hands it back.
func (w *Worker) process(d *delivery) {
	start := time.Now()
	msg := d.msg
	var seq uint64
	delivered := uint64(1)
	if meta, err := msg.Metadata(); err == nil {
		seq, delivered = meta.Sequence.Stream, meta.NumDelivered
	}
	headerID := msg.Headers().Get(jetstream.MsgIDHeader)
	body := msg.Data()
	published := streams.OriginalSubject(w.cfg.Prefix, msg.Subject())
	target := resultTarget(targetToken(w.cfg.Prefix, published))
	res := Result{ID: ResultID(headerID, body, seq), Target: target}
	subject := streams.ResultSubject(w.cfg.Prefix, target, res.ID)

	job, jerr := Parse(w.cfg.Prefix, published, headerID, body)
	if herr := CheckHeaders(msg.Headers()); herr != nil {
		jerr = herr
	}
	res.Op = job.Op
	if res.Op == "" {
		res.Op = Op(opToken(published))
	}
	log := w.log.With(zap.String("job_id", res.ID), zap.String("target", target),
		zap.String("op", string(res.Op)), zap.String("username", job.Username),
		zap.Uint64("delivery", delivered))

	// Everything decided from the job alone comes first.
	var password secret.Secret
	var ops Ops
	if jerr == nil && !job.SealedPassword.IsZero() {
		password, jerr = w.openPassword(job)
	}
	if jerr == nil {
		var ok bool
		if ops, ok = w.cfg.Targets[job.Target]; !ok {
			jerr = Errorf(CodeUnknownTarget, "target %q is not configured on this worker", job.Target)
		}
	}
	// Refused jobs wait their turn while valid ones run: a flood of them
	// must not slow other targets' jobs (Pacer). Not while held jobs fill
	// half the consumer's window, though: then the flood's jobs hold back
	// the partition's later jobs, other targets' among them, which are
	// delivered only as the window frees.
	if jerr == nil {
		defer w.cfg.Pacer.validJob()()
	} else if !w.windowFilling() {
		w.cfg.Pacer.refusal(w.stopCtx)
	}
	// A job id already answered (republished after the duplicate window,
	// or redelivered after its result was stored) changes nothing: its
	// stored result is published again, whatever the body says now. A
	// valid job looks first; a refused one publishes only where no result
	// is stored yet, which tells the same in one round trip.
	keyed := validTarget(target) && !strings.HasPrefix(res.ID, "seq-")
	if jerr == nil && keyed {
		c := w.check(d, seq, subject)
		if c.err != nil {
			w.handBack(d, log, "look up an earlier result", c.err)
			return
		}
		if c.found {
			w.answerStored(d, log, seq, subject, c.stored, res.Op, start)
			return
		}
		if c.turnErr != nil || !c.turn {
			w.handBack(d, log, "an older job of this target is still pending", c.turnErr)
			return
		}
		d.inTurn = true
	}

	attempts := 1
	if jerr == nil {
		var handBack bool
		attempts, jerr, handBack = w.execute(d, ops, job, password, &res)
		attempts += int(delivered) - 1
		if handBack {
			w.handBack(d, log, "stopping or MySQL state not settled", nil)
			return
		}
	}
	res.Attempts = attempts
	res.CompletedAt = time.Now().UTC()
	if jerr != nil {
		res.Status, res.Error = StatusError, jerr
		res.User, res.Users, res.Next, res.Secret = nil, nil, "", nil
	} else {
		res.Status = StatusOK
	}
	data := res.AppendJSON(make([]byte, 0, 512))
	var err error
	if jerr != nil && keyed && !executed(jerr) {
		var exists bool
		exists, err = w.publishNew(subject, data)
		if err == nil && exists {
			stored, ok, lerr := w.lookup(subject)
			if lerr != nil || !ok {
				w.handBack(d, log, "look up an earlier result", lerr)
				return
			}
			w.answerStored(d, log, seq, subject, stored, res.Op, start)
			return
		}
	} else {
		err = w.publish(subject, data)
	}
	if errors.Is(err, nats.ErrMaxPayload) {
		// Retrying cannot help: answer with a short error instead.
		jerr = Errorf(CodeInternal, "the result is larger than the NATS server accepts; ask for a smaller page (limit)")
		res.Status, res.Error, res.Users, res.Next = StatusError, jerr, nil, ""
		data = res.AppendJSON(data[:0])
		err = w.publish(subject, data)
	}
	if err != nil {
		w.handBack(d, log, "publish the result", err)
		return
	}
	if !w.finish(d, seq) {
		return
	}
	elapsed := time.Since(start)
	fields := []zap.Field{zap.Int("attempt", attempts), zap.Duration("duration", elapsed),
		zap.String("outcome", res.Status)}
	var code Code
	if jerr != nil {
		code = jerr.Code
		fields = append(fields, zap.String("code", string(jerr.Code)), zap.String("error", jerr.Message))
	}
	log.Info("job", fields...)
	w.cfg.Observer.JobDone(res.Op, res.Status, code, elapsed)
}

// executed reports whether an error came from running the job against
// MySQL, as opposed to refusing it from the job alone.
func executed(jerr *Error) bool {
	switch jerr.Code {
	case CodeInvalidJob, CodeInvalidUsername, CodeInvalidPassword, CodeUnknownTarget:
		return false
	}
	return true
}

// answerStored republishes a job's stored result and finishes the job.
func (w *Worker) answerStored(d *delivery, log *zap.Logger, seq uint64, subject string, stored []byte, op Op, start time.Time) {
	if err := w.publish(subject, stored); err != nil {
		w.handBack(d, log, "republish the stored result", err)
		return
	}
	if !w.finish(d, seq) {
		return
	}
	log.Info("job", zap.Int("attempt", 0), zap.Duration("duration", time.Since(start)),
		zap.String("outcome", "already_done"))
	w.cfg.Observer.JobDone(op, "already_done", "", time.Since(start))
}

// finish erases a job that carried a sealed password (unless the store is
// encrypted at rest) and acknowledges it.
// The ack is not waited for; the lane remembers it so that its next job's
// order check does not mistake the finished job for a pending one. It
// returns false when the job could not be erased: it is then handed back,
// and its next delivery answers from the stored result and erases it.
func (w *Worker) finish(d *delivery, seq uint64) bool {
	if w.cfg.Jobs != nil && !w.cfg.StoreEncrypted && seq != 0 && mayHoldPassword(d.msg.Data()) {
		err := w.natsRetry(func(ctx context.Context) error {
			err := w.cfg.Jobs.Erase(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return nil // erased by an earlier delivery
			}
			return err
		})
		if err != nil {
			w.handBack(d, w.log, "erase the job's sealed password", err)
			return false
		}
	}
	w.ack(d, seq)
	return true
}

// mayHoldPassword reports whether a job body may carry a password field:
// the key spelled out, or written with \u escapes (the only JSON escape
// that can spell letters).
func mayHoldPassword(body []byte) bool {
	return bytes.Contains(body, []byte("password")) || bytes.Contains(body, []byte(`\u`))
}

// ack acknowledges a finished job (see finish) and records it in its
// target's order (targetOrder).
func (w *Worker) ack(d *delivery, seq uint64) {
	_ = d.msg.Ack()
	if d.lane != nil && seq != 0 {
		w.mu.Lock()
		if o := w.targetOrder(d.lane.key); o != nil {
			if d.inTurn {
				o.raise(seq)
			} else {
				o.ackedOutOfTurn(seq)
			}
		}
		w.mu.Unlock()
	}
	d.acked.Store(true)
}

// startPreflight starts next's stored-result lookup and its order check
// while ahead, the job before it in the lane, runs. It returns nil for a
// job the worker answers without them (no job id, or no sequence).
func (w *Worker) startPreflight(next, ahead *delivery) *preflight {
	meta, err := next.msg.Metadata()
	aheadMeta, aerr := ahead.msg.Metadata()
	if err != nil || aerr != nil || w.cfg.Jobs == nil {
		return nil
	}
	headerID := next.msg.Headers().Get(jetstream.MsgIDHeader)
	published := streams.OriginalSubject(w.cfg.Prefix, next.msg.Subject())
	target := targetToken(w.cfg.Prefix, published)
	id := ResultID(headerID, next.msg.Data(), meta.Sequence.Stream)
	filter := targetFilter(w.cfg.Prefix, next.msg.Subject())
	if !validTarget(target) || strings.HasPrefix(id, "seq-") || filter == "" {
		return nil
	}
	// A job republished with the id of the job ahead (after the duplicate
	// window) must see that job's result, which is not stored yet.
	if ResultID(ahead.msg.Headers().Get(jetstream.MsgIDHeader), ahead.msg.Data(), aheadMeta.Sequence.Stream) == id {
		return nil
	}
	p := &preflight{done: make(chan struct{}), subject: streams.ResultSubject(w.cfg.Prefix, target, id),
		aheadAcked: &ahead.acked, aheadSeq: aheadMeta.Sequence.Stream}
	w.running.Add(1)
	go func() {
		defer w.running.Done()
		defer close(p.done)
		var wg sync.WaitGroup
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(w.hardCtx, 5*time.Second)
			defer cancel()
			p.first, p.firstErr = w.cfg.Jobs.First(ctx, filter, p.aheadSeq+1)
		})
		p.stored, p.found, p.err = w.lookup(p.subject)
		wg.Wait()
	}()
	return p
}

// checks is what a job must know before it runs: its stored result, and
// whether an older job of its target is still pending.
type checks struct {
	stored  []byte
	found   bool
	err     error // of the lookup
	turn    bool
	turnErr error
}

// check reads a job's stored result and its turn, both at once, or takes
// them from its preflight. The preflight's order check, counted from the
// job ahead, says the job may run only once the job ahead is acknowledged
// in its turn (so nothing older than it is pending); otherwise the turn
// is asked again.
func (w *Worker) check(d *delivery, seq uint64, subject string) checks {
	var c checks
	if p := d.pre; p != nil && p.subject == subject {
		d.pre = nil
		<-p.done
		c.stored, c.found, c.err = p.stored, p.found, p.err
		if c.err != nil || c.found {
			return c
		}
		if p.firstErr == nil && p.aheadAcked.Load() && p.first == seq && w.floorReached(d, p.aheadSeq) {
			c.turn = true
			return c
		}
		c.turn, c.turnErr = w.inTurn(d, seq)
		return c
	}
	turnDone := make(chan struct{})
	go func() {
		defer close(turnDone)
		c.turn, c.turnErr = w.inTurn(d, seq)
	}()
	stored, found, err := w.lookup(subject)
	<-turnDone
	c.stored, c.found, c.err = stored, found, err
	return c
}

// floorReached reports whether no job of d's target at or below seq is
// in the stream but ones this worker acknowledged.
func (w *Worker) floorReached(d *delivery, seq uint64) bool {
	if d.lane == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	o := w.targetOrder(d.lane.key)
	return o != nil && o.floor >= seq
}

// inTurn reports whether a job may run now: no older job of its target is
// still in the stream but ones this worker acknowledged (whose deletion
// the stream may not have applied yet). The search starts above the
// target's floor (targetOrder); usually one direct get, one more for each
// of this worker's acks still in the stream.
func (w *Worker) inTurn(d *delivery, seq uint64) (bool, error) {
	filter := targetFilter(w.cfg.Prefix, d.msg.Subject())
	if w.cfg.Jobs == nil || d.lane == nil || seq == 0 || filter == "" {
		return true, nil
	}
	w.mu.Lock()
	o := w.targetOrder(d.lane.key)
	var from uint64
	if o != nil {
		from = o.floor + 1
	}
	w.mu.Unlock()
	if o == nil {
		return true, nil // refused anyway: the target is not served here
	}
	ctx, cancel := context.WithTimeout(w.hardCtx, 5*time.Second)
	defer cancel()
	stale := 0
	for {
		first, err := w.cfg.Jobs.First(ctx, filter, from)
		if err != nil {
			return false, err
		}
		if first == 0 || first > seq {
			// The job itself, unacknowledged, is in the stream: a server
			// that does not see it is a replica behind the leader (direct
			// gets are answered by replicas 90% caught up), which may miss
			// an older job too. Ask again.
			if stale++; stale == staleTurnAnswers {
				return false, errStaleTurn
			}
			select {
			case <-ctx.Done():
				return false, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		// first <= seq: it is the job itself, this worker's own ack whose
		// deletion is not applied yet (skipped), or an older pending job.
		w.mu.Lock()
		_, mine := o.acked[first]
		if first == seq || !mine {
			o.raise(first - 1)
		}
		w.mu.Unlock()
		if first == seq || !mine {
			return first == seq, nil
		}
		from = first + 1
	}
}

// staleTurnAnswers is how many answers of a replica behind an order check
// takes before it gives up and hands its job back.
const staleTurnAnswers = 5

// errStaleTurn: the order check never saw the job itself in the stream.
var errStaleTurn = errors.New("the jobs stream's replicas answering the order check do not see this job yet")

// targetFilter returns the stored-subject filter of a partitioned job's
// target, "P.jobs.<partition>.<target>.>", or "" for an unpartitioned one.
func targetFilter(prefix, stored string) string {
	rest, ok := strings.CutPrefix(stored, prefix+".jobs.")
	if !ok {
		return ""
	}
	part, rest, ok := strings.Cut(rest, ".")
	if !ok {
		return ""
	}
	target, _, ok := strings.Cut(rest, ".")
	if !ok {
		return ""
	}
	return prefix + ".jobs." + part + "." + target + ".>"
}

func (w *Worker) openPassword(job Job) (secret.Secret, *Error) {
	pw, err := w.cfg.Keys.OpenPassword(job.SealedPassword, job.ReplyKey, job.ID)
	if err != nil {
		return secret.Secret{}, Errorf(CodeInvalidPassword, "the sealed password does not open with reply_key as sender and this worker's key, or was sealed for another job id: %v", err)
	}
	if perr := CheckPassword(pw.Reveal()); perr != nil {
		return secret.Secret{}, perr
	}
	return pw, nil
}

// handBack returns a job to the stream for a later delivery.
func (w *Worker) handBack(d *delivery, log *zap.Logger, what string, err error) {
	_ = d.msg.NakWithDelay(time.Second)
	w.cfg.Observer.HandedBack(what)
	log.Warn("job handed back", zap.String("while", what), zap.Error(err))
}

// natsRetry retries a NATS call briefly: results and lookups must not be
// lost to a blip, but a long outage hands the job back instead.
func (w *Worker) natsRetry(op func(ctx context.Context) error) error {
	b := backoff.WithContext(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(50*time.Millisecond),
		backoff.WithMaxInterval(2*time.Second),
		backoff.WithMaxElapsedTime(20*time.Second)), w.hardCtx)
	return backoff.Retry(func() error {
		ctx, cancel := context.WithTimeout(w.hardCtx, 5*time.Second)
		defer cancel()
		return op(ctx)
	}, b)
}

func (w *Worker) lookup(subject string) (data []byte, ok bool, err error) {
	err = w.natsRetry(func(ctx context.Context) error {
		var lerr error
		data, ok, lerr = w.cfg.Results.Lookup(ctx, subject)
		return lerr
	})
	return data, ok, err
}

// publishNew publishes data on subject only when no result is stored there
// yet; exists reports that one was.
func (w *Worker) publishNew(subject string, data []byte) (exists bool, err error) {
	err = w.natsRetry(func(ctx context.Context) error {
		var perr error
		exists, perr = w.cfg.Results.PublishNew(ctx, subject, data)
		if errors.Is(perr, nats.ErrMaxPayload) {
			return backoff.Permanent(perr)
		}
		return perr
	})
	return exists, err
}

func (w *Worker) publish(subject string, data []byte) error {
	return w.natsRetry(func(ctx context.Context) error {
		err := w.cfg.Results.Publish(ctx, subject, data)
		if errors.Is(err, nats.ErrMaxPayload) {
			return backoff.Permanent(err)
		}
		return err
	})
}

// natsError marks a failure of the worker's own NATS side (vault, intents)
// inside an operation: transient, and nothing about MySQL.
type natsError struct{ err error }

func (e natsError) Error() string { return e.err.Error() }
func (e natsError) Unwrap() error { return e.err }

func classify(err error) mysqlops.Class {
	var ne natsError
	if errors.As(err, &ne) {
		return mysqlops.Transient
	}
	return mysqlops.Classify(err)
}

// execute applies a valid job with retries. It returns the number of
// attempts, the job's error (nil on success), and handBack=true when the
// job must go back to the stream without a result (shutdown, or a create
// that may have left a half-made account it could not clean up).
func (w *Worker) execute(d *delivery, ops Ops, job Job, password secret.Secret, res *Result) (int, *Error, bool) {
	generated := false
	if password.IsZero() && (job.Op == OpCreate || job.Op == OpResetPassword) {
		pw, err := w.cfg.GeneratePassword()
		if err != nil {
			return 1, Errorf(CodeInternal, "generate a password: %v", err), false
		}
		password, generated = pw, true
	}

	deadline := d.received.Add(w.cfg.RetryBudget)
	if err := w.stillUnreachable(d, deadline); err != nil {
		// Counted as one attempt, as a refused job is: every result
		// says the worker handled the job at least once.
		return 1, toJobError(err), false
	}
	attempts := 0
	intent := &jobIntent{store: w.cfg.Intents, key: job.Target + "." + job.Username, id: job.ID}
	if meta, err := d.msg.Metadata(); err != nil || meta.NumDelivered > 1 {
		intent.redelivered = true
	}
	b := backoff.WithContext(&budgetBackOff{
		next: backoff.NewExponentialBackOff(
			backoff.WithInitialInterval(100*time.Millisecond),
			backoff.WithMaxInterval(unreachableFresh),
			backoff.WithMaxElapsedTime(0)),
		deadline: deadline,
	}, w.stopCtx)
	var lastErr error
	err := backoff.RetryNotify(func() error {
		attempts++
		err := w.apply(ops, job, password, generated, intent, res)
		w.noteReach(d, err)
		if err == nil {
			return nil
		}
		lastErr = err
		if ne := (natsError{}); !errors.As(err, &ne) && !isOutcome(err) {
			w.cfg.Observer.MySQLError(classify(err).String())
		}
		if classify(err) == mysqlops.Permanent {
			return backoff.Permanent(err)
		}
		return err
	}, b, func(err error, wait time.Duration) {
		_ = d.msg.InProgress()
		w.cfg.Observer.Retry(job.Op, classify(err).String())
		w.log.Warn("retrying", zap.String("job_id", job.ID), zap.String("target", job.Target),
			zap.Int("attempt", attempts), zap.String("class", classify(err).String()),
			zap.Duration("wait", wait), zap.Error(err))
	})
	if err == nil {
		return attempts, nil, false
	}
	var ne natsError
	if errors.As(lastErr, &ne) || (w.stopCtx.Err() != nil && classify(lastErr) != mysqlops.Permanent) {
		// The worker's own NATS side failed, or it is stopping: nothing
		// to tell the requester yet; another delivery finishes the job.
		return attempts, nil, true
	}
	jerr := toJobError(lastErr)
	if job.Op == OpCreate && jerr.Code != CodeUserExists {
		// Never leave an account without its grant once the job has
		// ended: drop what this job may have made, or keep the job.
		ctx, cancel := context.WithTimeout(w.hardCtx, 10*time.Second)
		defer cancel()
		if aerr := ops.Abandon(ctx, job.Username, intent); aerr != nil {
			w.log.Warn("cannot drop a possibly half-made account; the job stays queued",
				zap.String("job_id", job.ID), zap.String("target", job.Target), zap.Error(aerr))
			return attempts, nil, true
		}
	}
	return attempts, jerr, false
}

// stillUnreachable returns the error that proved the lane's target
// unreachable moments ago, when job d may not try again: its first
// delivery (so nothing of it was ever sent, and a create has nothing to
// clean up) waited in the lane past its retry budget. Without this, each
// job queued behind a server that went dark would make one attempt, and
// an attempt can cost the whole connect timeout: thousands of queued jobs
// would take hours to be answered, and hold their partition's window all
// that time.
func (w *Worker) stillUnreachable(d *delivery, deadline time.Time) error {
	l := d.lane
	if l == nil || l.unreachable == nil || time.Since(l.unreachableAt) >= unreachableFresh || time.Now().Before(deadline) {
		return nil
	}
	if meta, err := d.msg.Metadata(); err != nil || meta.NumDelivered != 1 {
		return nil
	}
	return fmt.Errorf("%w, found by the target's previous job %s ago", l.unreachable, time.Since(l.unreachableAt).Round(time.Millisecond))
}

// noteReach records on d's lane whether an attempt reached MySQL.
func (w *Worker) noteReach(d *delivery, err error) {
	l := d.lane
	switch {
	case l == nil:
	case err != nil && mysqlops.NothingSent(err) && classify(err) != mysqlops.Permanent:
		l.unreachable, l.unreachableAt = err, time.Now()
	case err == nil || !errors.As(err, new(natsError)):
		l.unreachable = nil
	}
}

// budgetBackOff retries until the budget's deadline and makes the last
// attempt at the deadline itself, so that "unavailable" means MySQL stayed
// unreachable through the whole budget.
type budgetBackOff struct {
	next     backoff.BackOff
	deadline time.Time
}

func (b *budgetBackOff) NextBackOff() time.Duration {
	left := time.Until(b.deadline)
	if left <= 0 {
		return backoff.Stop
	}
	return min(b.next.NextBackOff(), left)
}

func (b *budgetBackOff) Reset() { b.next.Reset() }

// apply runs one attempt of a job.
func (w *Worker) apply(ops Ops, job Job, password secret.Secret, generated bool, intent *jobIntent, res *Result) error {
	ctx := w.hardCtx
	var ready mysqlops.Ready
	if generated && res.Secret == nil {
		// The sealed password goes to the vault before MySQL changes:
		// an account must never have a password nobody can read. The
		// write runs while MySQL checks the account, and the password
		// statement waits for it (ready). An entry of a job that then
		// fails expires unread.
		stored := w.storeSecret(ctx, job, password)
		ready = func(ctx context.Context) error {
			select {
			case s := <-stored:
				if s.err != nil {
					return s.err
				}
				res.Secret = s.secret
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	switch job.Op {
	case OpCreate:
		if err := ops.Create(ctx, job.Username, password, job.ReadOnly, intent, ready); err != nil {
			return err
		}
		if err := mustHaveWaited(ctx, ready, res); err != nil {
			return err
		}
		res.User = &Account{Username: job.Username, ReadOnly: job.ReadOnly}
	case OpResetPassword:
		acct, err := ops.ResetPassword(ctx, job.Username, password, ready)
		if err != nil {
			return err
		}
		if err := mustHaveWaited(ctx, ready, res); err != nil {
			return err
		}
		res.User = &Account{Username: acct.Username, ReadOnly: acct.ReadOnly, Protected: acct.Protected}
	case OpDelete:
		acct, err := ops.Delete(ctx, job.Username, intent)
		if err != nil {
			return err
		}
		res.User = &Account{Username: acct.Username, ReadOnly: acct.ReadOnly, Protected: acct.Protected}
	case OpList:
		accts, next, err := ops.List(ctx, job.After, job.Limit)
		if err != nil {
			return err
		}
		res.Users = make([]Account, len(accts))
		for i, a := range accts {
			res.Users[i] = Account{Username: a.Username, ReadOnly: a.ReadOnly, Protected: a.Protected}
		}
		res.Next = next
	}
	return nil
}

// mustHaveWaited makes sure a job with a generated password reports where
// the password waits, even from an Ops that succeeded without calling ready.
func mustHaveWaited(ctx context.Context, ready mysqlops.Ready, res *Result) error {
	if ready == nil || res.Secret != nil {
		return nil
	}
	return ready(ctx)
}

// storedSecret is the outcome of storeSecret.
type storedSecret struct {
	secret *Secret
	err    error
}

// storeSecret seals a generated password to the job's reply key and writes
// it to the vault in the background; the channel gets the outcome.
func (w *Worker) storeSecret(ctx context.Context, job Job, password secret.Secret) <-chan storedSecret {
	out := make(chan storedSecret, 1) // never blocks: an operation that stops early does not read it
	sealed, err := w.cfg.Keys.SealPassword(job.ID, password, job.ReplyKey)
	if err != nil {
		out <- storedSecret{err: fmt.Errorf("seal the generated password: %w", err)}
		return out
	}
	go func() {
		key, expires, err := w.cfg.Secrets.Put(ctx, job.Target, job.ID, sealed)
		if err != nil {
			out <- storedSecret{err: natsError{fmt.Errorf("store the sealed password in the vault: %w", err)}}
			return
		}
		out <- storedSecret{secret: &Secret{Bucket: w.cfg.Secrets.Bucket(), Key: key, ExpiresAt: expires}}
	}()
	return out
}

// jobIntent is a job's view of the intent record of its username.
type jobIntent struct {
	store    Intents
	key, id  string
	recorded bool // this delivery recorded it
	// redelivered: an earlier delivery of the job may have recorded it,
	// and sent its statement.
	redelivered bool
	// maybeRan: an earlier attempt's statement may have run (recorded,
	// and not known to have failed); sending: this attempt's may.
	maybeRan, sending bool
}

// Mine reports whether an attempt of this job, in this delivery or an
// earlier one, may have run its statement: recorded it, and did not learn
// that it failed to run.
func (i *jobIntent) Mine(ctx context.Context) (bool, error) {
	if i.recorded {
		return i.maybeRan || i.sending, nil
	}
	prev, err := i.store.Get(ctx, i.key)
	if err != nil {
		return false, natsError{fmt.Errorf("read the intent record: %w", err)}
	}
	return prev == i.id, nil
}

// Record notes that this job is about to create or drop the account, and
// reports whether an earlier attempt or delivery of the job may have run
// its statement. A delivery knows its own attempts (Unsent clears one);
// a redelivery takes an earlier delivery's record as one that may have
// run, reading it first (redeliveries are rare; a first delivery's first
// attempt costs one write).
func (i *jobIntent) Record(ctx context.Context) (bool, error) {
	if i.recorded {
		i.maybeRan = i.maybeRan || i.sending
		i.sending = true
		return i.maybeRan, nil
	}
	earlier := false
	if i.redelivered {
		prev, err := i.store.Get(ctx, i.key)
		if err != nil {
			return false, natsError{fmt.Errorf("read the intent record: %w", err)}
		}
		earlier = prev == i.id
	}
	if err := i.store.Put(ctx, i.key, i.id); err != nil {
		return false, natsError{fmt.Errorf("write the intent record: %w", err)}
	}
	i.recorded, i.maybeRan, i.sending = true, earlier, true
	return earlier, nil
}

// Unsent notes that this attempt's statement did not run.
func (i *jobIntent) Unsent() { i.sending = false }

// isOutcome reports whether err is an answer about the account (exists,
// not found, protected, foreign) rather than a failure.
func isOutcome(err error) bool {
	return errors.Is(err, mysqlops.ErrUserExists) || errors.Is(err, mysqlops.ErrUserNotFound) ||
		errors.Is(err, mysqlops.ErrProtected) || errors.Is(err, mysqlops.ErrForeign)
}

// toJobError maps an operation's final error to a contract error.
func toJobError(err error) *Error {
	switch {
	case errors.Is(err, mysqlops.ErrUserExists):
		return Errorf(CodeUserExists, "an account of that name already exists on the server; choose another username")
	case errors.Is(err, mysqlops.ErrUserNotFound):
		return Errorf(CodeUserNotFound, "no account of that name belongs to this target")
	case errors.Is(err, mysqlops.ErrProtected):
		return Errorf(CodeProtectedUser, "the account is protected (the database's default user): it cannot be changed or deleted")
	case errors.Is(err, mysqlops.ErrForeign):
		return Errorf(CodeForeignUser, "the account holds privileges outside this target's database; it is not managed here and was left untouched")
	}
	// Faults of the worker's own setup, for its operator to fix; the
	// password file's path stays in the worker's log.
	switch {
	case errors.As(err, new(*mysqlops.PasswordSourceError)):
		return Errorf(CodeUnavailable, "the worker could not read this target's admin password file through the retry budget; "+
			"retry the job once the worker's operator has fixed it (the worker's log says why)")
	case errors.As(err, new(*mysqlops.LoginRefusedError)):
		return Errorf(CodeUnavailable, "MySQL refused the worker's admin login through the retry budget: this target's password file "+
			"does not hold the admin's password (a rotation half done?); retry the job once the worker's operator has fixed it")
	case mysqlops.LoginRefused(err):
		return Errorf(CodeInternal, "MySQL refused the worker's admin login for this target (the password in its DSN is wrong); "+
			"the worker's operator must fix the DSN and restart the worker, then retry the job")
	case mysqlops.MissingPrivilege(err):
		return Errorf(CodeInternal, "MySQL refused a statement for lack of a privilege of the worker's admin account (%v); "+
			"the worker's operator must grant what contract §5.7 lists, then retry the job", err)
	}
	if classify(err) != mysqlops.Permanent {
		if mysqlops.FromServer(err) {
			// Reachable, but busy: a lock held by another session, a
			// statement over its time limit, a server shutting down.
			return Errorf(CodeUnavailable, "MySQL answered but kept failing the job through the retry budget (last error: %v); retry the job later", err)
		}
		return Errorf(CodeUnavailable, "MySQL stayed unreachable through the retry budget (last error: %v); retry the job once the server is back", err)
	}
	return Errorf(CodeInternal, "%v", err)
}

// opToken returns the op part of a job subject as a result op, for jobs whose
// subject did not parse.
func opToken(subject string) string {
	i := strings.LastIndex(subject, ".user.")
	if i < 0 {
		return ""
	}
	return "user." + subject[i+len(".user."):]
}
