package jobs

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/dbusers/dbusers/internal/streams"
)

// The fetcher takes deliveries from the consumer and queues each on its
// target's lane (lane.go). It never blocks, so one slow target cannot
// stall the others, and it keeps every held job alive.

// delivery is one job as the consumer delivered it.
type delivery struct {
	msg       jetstream.Msg
	seq       uint64 // stream sequence; 0 when the metadata does not parse
	delivered uint64 // delivery count, 1 for a first delivery
	received  time.Time
	// extended is when the server last heard that this job is being
	// worked on (its delivery, or the last keep-alive); guarded by w.mu.
	extended time.Time
	lane     *lane // nil in unit tests that call process directly
	// again are later deliveries of the same job that arrived while this
	// one was held (its ack wait ran out under a stall); they are acked
	// with it. Guarded by w.mu.
	again []jetstream.Msg
	hdr   jobHeaders
}

func newDelivery(msg jetstream.Msg, now time.Time) *delivery {
	d := &delivery{msg: msg, delivered: 1, received: now, extended: now}
	if meta, err := msg.Metadata(); err == nil {
		d.seq, d.delivered = meta.Sequence.Stream, max(meta.NumDelivered, 1)
	}
	d.headers()
	if r, ok := msg.(headerReleaser); ok {
		r.releaseHeaders()
	}
	return d
}

// Run consumes jobs until ctx ends, then stops taking jobs, lets running
// ones finish within the grace period and hands the rest back. It returns
// once nothing is in flight. A ctx cancelled with a cause (a partition
// lease that could not be renewed) gets no grace: its statements are
// cancelled at once, since another process may soon work the partition.
// ready, when not nil, is called once jobs are being taken.
func (w *Worker) Run(ctx context.Context, source Source, ready func()) error {
	pullCtx, stopPulling := context.WithCancel(context.WithoutCancel(ctx))
	pulled := make(chan error, 1)
	go func() { pulled <- source.Pull(pullCtx, w.dispatch, ready) }()
	ticker := time.NewTicker(w.cfg.AckWait / keepAliveTicks)
	defer ticker.Stop()
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case err := <-pulled:
			stopPulling()
			return fmt.Errorf("pull jobs: %w", err)
		case <-ticker.C:
			w.keepAlive()
		}
	}

	stopPulling()
	if err := <-pulled; err != nil {
		return fmt.Errorf("pull jobs: %w", err)
	}
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
	grace := w.cfg.ShutdownGrace
	if cause := context.Cause(ctx); cause != nil && cause != context.Canceled {
		w.hardStop()
		grace = 0
		w.log.Warn("stopping at once", zap.NamedError("cause", cause))
	}
	for _, d := range handBack {
		_ = d.msg.Nak()
	}
	w.log.Info("stopping: waiting for running jobs", zap.Int("handed_back", len(handBack)))

	done := make(chan struct{})
	go func() { w.running.Wait(); close(done) }()
	timer := time.NewTimer(grace)
	defer timer.Stop()
	for {
		select {
		case <-done:
			w.hardStop()
			return nil
		case <-timer.C:
			w.hardStop() // cancel statements; their jobs are handed back
		case <-ticker.C:
			w.keepAlive()
		}
	}
}

// dispatch is the consumer callback: it queues the job on its target's
// lane. A job the lane holds already (delivered again after its ack wait
// ran out during a stall) is not queued twice.
func (w *Worker) dispatch(msg jetstream.Msg) {
	key := targetToken(w.cfg.Prefix, streams.OriginalSubject(w.cfg.Prefix, msg.Subject()))
	d := newDelivery(msg, time.Now())
	w.mu.Lock()
	if w.stopping {
		w.mu.Unlock()
		_ = msg.Nak()
		return
	}
	l, ok := w.lanes[key]
	if !ok {
		l = &lane{key: key, seqs: map[uint64]*delivery{}}
		w.lanes[key] = l
		w.running.Add(1)
		go w.runLane(l)
	}
	if held := l.seqs[d.seq]; held != nil && d.seq != 0 {
		held.again = append(held.again, msg)
		w.mu.Unlock()
		return
	}
	d.lane = l
	l.queue = append(l.queue, d)
	if d.seq != 0 {
		l.seqs[d.seq] = d
	}
	w.held++
	w.mu.Unlock()
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
// NATS CPU than running them (make bench measured it). A job is told again at least a
// third of an ack wait, less one tick, before its deadline.
func (w *Worker) keepAlive() {
	now := time.Now()
	due := now.Add(-w.cfg.AckWait * 2 / 3)
	w.mu.Lock()
	var msgs []jetstream.Msg
	for _, l := range w.lanes {
		for _, d := range l.seqs {
			if !d.extended.After(due) {
				d.extended = now
				msgs = append(msgs, d.msg)
			}
		}
		for _, d := range l.queue {
			if d.seq == 0 && !d.extended.After(due) {
				d.extended = now
				msgs = append(msgs, d.msg)
			}
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

// unseen reports whether no process was delivered d's job before
// (Config.FreshFrom).
func (w *Worker) unseen(d *delivery) bool {
	return w.cfg.FreshFrom > 0 && d.delivered == 1 && d.seq >= w.cfg.FreshFrom
}
