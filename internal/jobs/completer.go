package jobs

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/dbusers/dbusers/wire"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// The completer is the one place that finishes jobs: it publishes the
// results of many jobs with one wait, then erases and acks them in order,
// purges the unused vault entries of the failed ones (vaultentry.go),
// hands back the ones the executor could not finish, logs each job and
// counts the metrics.

// verdict is what becomes of a job.
type verdict int

const (
	// answer: publish the job's result, then ack it.
	answer verdict = iota
	// answerStored: publish the job's stored result again, then ack it.
	answerStored
	// handBack: no result; the job goes back to the stream (only when the
	// worker stops: the partition is then worked anew from its oldest job).
	handBack
)

// outcome is what a stage decided for one job.
type outcome struct {
	j       *work
	verdict verdict
	data    []byte // the result to publish
	onlyNew bool   // publish only where no result is stored yet
	why     string // of a hand-back
	err     error
}

func (j *work) answerStored(data []byte) outcome {
	return outcome{j: j, verdict: answerStored, data: data}
}

func (j *work) handBack(why string, err error) outcome {
	return outcome{j: j, verdict: handBack, why: why, err: err}
}

// refused answers a job refused from the job alone. Its result is
// published only where none is stored yet, which tells whether the id was
// answered before in the same round trip.
func (j *work) refused() outcome {
	return j.finished(1, j.jerr)
}

// finished answers a job that ran (or was refused) with its attempts and
// error (nil: ok).
func (j *work) finished(attempts int, jerr *wire.Error) outcome {
	r := &j.res
	r.Attempts = attempts
	r.CompletedAt = time.Now().UTC()
	if jerr != nil {
		r.Status, r.Error = wire.StatusError, jerr
		r.User, r.Users, r.Next, r.Secret = nil, nil, "", nil
	} else {
		r.Status = wire.StatusOK
	}
	return outcome{j: j, verdict: answer, data: r.AppendJSON(make([]byte, 0, 512)),
		onlyNew: jerr != nil && j.keyed && !executed(jerr)}
}

// completer gathers a batch's outcomes and finishes them at flush.
type completer struct {
	w    *Worker
	outs []outcome
	// handingBack: a job of this batch went back; so do all after it.
	handingBack bool
}

func (c *completer) add(o outcome) {
	if o.verdict == handBack {
		c.handingBack = true
	}
	c.outs = append(c.outs, o)
}

// flush publishes the gathered results (one wait), then finishes each job
// in order, while the vault entries of the jobs whose error result went
// out are purged (one wait).
func (c *completer) flush() {
	outs := c.outs
	c.outs = nil
	if len(outs) == 0 {
		return
	}
	w := c.w
	var pubs []Publication
	var idx []int
	for i, o := range outs {
		if o.verdict != handBack {
			pubs = append(pubs, Publication{Subject: o.j.subject, Data: o.data, OnlyNew: o.onlyNew})
			idx = append(idx, i)
		}
	}
	for len(pubs) > 0 {
		exists, errs := w.publishMany(pubs)
		var again []Publication
		var againIdx []int
		var failed error
		for k, err := range errs {
			o := &outs[idx[k]]
			switch {
			case err == nil && exists[k]:
				// Answered before: that result stands.
				data, ok, lerr := w.lookup(o.j.subject)
				if lerr != nil || !ok {
					*o = o.j.handBack("look up an earlier result", lerr)
					continue
				}
				*o = o.j.answerStored(data)
				again, againIdx = append(again, Publication{Subject: o.j.subject, Data: data}), append(againIdx, idx[k])
			case errors.Is(err, nats.ErrMaxPayload):
				// Retrying cannot help: answer with a short error instead.
				r := &o.j.res
				r.Status, r.Error, r.Users, r.Next = wire.StatusError,
					wire.Errorf(wire.CodeInternal, "the result is larger than the NATS server accepts; ask for a smaller page (limit)"), nil, ""
				o.data = r.AppendJSON(o.data[:0])
				again, againIdx = append(again, Publication{Subject: o.j.subject, Data: o.data}), append(againIdx, idx[k])
			case err != nil:
				if w.hardCtx.Err() != nil {
					*o = o.j.handBack("publish the result", err)
					continue
				}
				again, againIdx = append(again, pubs[k]), append(againIdx, idx[k])
				failed = err
			}
		}
		if failed != nil {
			w.log.Warn("publish results: retrying", zap.Int("jobs", len(again)), zap.Error(failed))
			pause(w.hardCtx, time.Second)
		}
		pubs, idx = again, againIdx
	}
	// Only now is each error result decided (published): an entry is
	// never purged for a job that may still end otherwise.
	purged := w.purgeUnused(outs)
	defer purged()
	backing := false
	for _, o := range outs {
		if o.verdict == handBack || backing {
			backing = true // none after a handed-back job is acked
			c.handBackJob(o)
			continue
		}
		if !w.erase(o.j) {
			backing = true
			c.handBackJob(o.j.handBack("erase the job's sealed password", nil))
			continue
		}
		c.ack(o.j.d)
		c.done(o)
	}
	if backing {
		c.handingBack = true
	}
}

// ack acknowledges a finished job, and its deliveries that came again.
func (c *completer) ack(d *delivery) {
	_ = d.msg.Ack()
	c.w.mu.Lock()
	again := d.again
	d.again = nil
	c.w.mu.Unlock()
	for _, m := range again {
		_ = m.Ack()
	}
}

func (c *completer) handBackJob(o outcome) {
	_ = o.j.d.msg.NakWithDelay(time.Second)
	c.w.cfg.Observer.HandedBack(o.why)
	c.w.jobLog(o.j).Warn("job handed back", zap.String("while", o.why), zap.Error(o.err))
}

// done logs a finished job and counts it.
func (c *completer) done(o outcome) {
	w, j := c.w, o.j
	elapsed := time.Since(j.start)
	// One call with every field: a logger of its own per job (With) cost
	// more than the line.
	fields := make([]zap.Field, 0, 11)
	fields = append(fields, jobFields(j)...)
	if o.verdict == answerStored {
		fields = append(fields, zap.Int("attempt", 0), zap.Duration("duration", elapsed), zap.String("outcome", OutcomeAlreadyDone))
		w.log.Info("job", fields...)
		w.cfg.Observer.JobDone(j.res.Op, "already_done", "", elapsed)
		return
	}
	fields = append(fields, zap.Int("attempt", j.res.Attempts), zap.Duration("duration", elapsed), zap.String("outcome", j.res.Status))
	var code wire.Code
	if e := j.res.Error; e != nil {
		code = e.Code
		fields = append(fields, zap.String("code", string(e.Code)), zap.String("error", e.Message))
		if e.Cause != nil {
			// The driver's own words (never a password: statements
			// that carry one have their server message withheld).
			fields = append(fields, zap.NamedError("cause", e.Cause))
		}
	}
	w.log.Info("job", fields...)
	w.cfg.Observer.JobDone(j.res.Op, j.res.Status, code, elapsed)
}

// jobFields are the fields that name a job in the log.
func jobFields(j *work) []zap.Field {
	return []zap.Field{zap.String("job_id", j.res.ID), zap.String("target", j.res.Target),
		zap.String("op", string(j.res.Op)), zap.String("username", j.job.Username),
		zap.Uint64("delivery", j.d.delivered)}
}

func (w *Worker) jobLog(j *work) *zap.Logger { return w.log.With(jobFields(j)...) }

// erase deletes a job that carried a sealed password (unless the store is
// encrypted at rest) before its ack; false when it could not: the job is
// then handed back, and its next delivery answers from the stored result
// and erases it.
func (w *Worker) erase(j *work) bool {
	d := j.d
	if w.cfg.Jobs == nil || w.cfg.StoreEncrypted || d.seq == 0 || !mayHoldPassword(d.msg.Data()) {
		return true
	}
	err := w.natsRetry(func(ctx context.Context) error {
		err := w.cfg.Jobs.Erase(ctx, d.seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil // erased by an earlier delivery
		}
		return err
	})
	return err == nil
}

// mayHoldPassword reports whether a job body may carry a password field:
// the key spelled out, or written with \u escapes (the only JSON escape
// that can spell letters).
func mayHoldPassword(body []byte) bool {
	return bytes.Contains(body, []byte("password")) || bytes.Contains(body, []byte(`\u`))
}

// executed reports whether an error came from running the job against
// MySQL, as opposed to refusing it from the job alone.
func executed(jerr *wire.Error) bool {
	switch jerr.Code {
	case wire.CodeInvalidJob, wire.CodeInvalidUsername, wire.CodeInvalidPassword, wire.CodeUnknownTarget:
		return false
	}
	return true
}

// publishMany publishes results with one wait (BatchResults), or one by
// one on a ResultStore without it.
func (w *Worker) publishMany(pubs []Publication) ([]bool, []error) {
	ctx, cancel := context.WithTimeout(w.hardCtx, 10*time.Second)
	defer cancel()
	if b, ok := w.cfg.Results.(BatchResults); ok {
		return b.PublishMany(ctx, pubs)
	}
	exists, errs := make([]bool, len(pubs)), make([]error, len(pubs))
	for i, p := range pubs {
		if p.OnlyNew {
			exists[i], errs[i] = w.cfg.Results.PublishNew(ctx, p.Subject, p.Data)
		} else {
			errs[i] = w.cfg.Results.Publish(ctx, p.Subject, p.Data)
		}
	}
	return exists, errs
}

// lookupMany reads stored results by subject (BatchResults), or one by
// one.
func (w *Worker) lookupMany(subjects []string) (map[string][]byte, error) {
	ctx, cancel := context.WithTimeout(w.hardCtx, 10*time.Second)
	defer cancel()
	if b, ok := w.cfg.Results.(BatchResults); ok {
		return b.LookupMany(ctx, subjects)
	}
	out := map[string][]byte{}
	for _, s := range subjects {
		data, ok, err := w.cfg.Results.Lookup(ctx, s)
		if err != nil {
			return nil, err
		}
		if ok {
			out[s] = data
		}
	}
	return out, nil
}

func (w *Worker) lookup(subject string) (data []byte, ok bool, err error) {
	err = w.natsRetry(func(ctx context.Context) error {
		var lerr error
		data, ok, lerr = w.cfg.Results.Lookup(ctx, subject)
		return lerr
	})
	return data, ok, err
}

// natsRetry retries a NATS call briefly: results and lookups must not be
// lost to a blip.
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

// holdRetry retries op, which a job of the lane needs before it can go
// on, for as long as the worker runs: the job is not handed back while
// the worker goes on working its partition, since its target's later jobs
// would overtake it. It returns op's last error once the worker stops.
func (w *Worker) holdRetry(what string, d *delivery, op func() error) error {
	for {
		err := op()
		if err == nil || w.stopCtx.Err() != nil {
			return err
		}
		w.log.Warn("retrying", zap.String("while", what), zap.Uint64("seq", d.seq), zap.Error(err))
		pause(w.stopCtx, time.Second)
	}
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
