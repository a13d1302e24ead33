package jobs

import (
	"strings"
	"time"

	"github.com/dbusers/dbusers/internal/streams"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// The executor decides what each job of a batch comes to, in stream
// order: refused from the job alone, answered from its stored result, or
// run against MySQL, consecutive jobs on distinct accounts together
// (batch.go) and the others alone (attempt.go). It returns outcomes to
// the completer and never acks, naks or counts itself.

// work is one job of a batch as the executor sees it.
type work struct {
	d       *delivery
	start   time.Time
	res     wire.Result
	subject string // of its result
	job     Job
	jerr    *wire.Error // decided from the job alone
	ops     Ops
	// password is the job's chosen password, opened; zero otherwise.
	password secret.Secret
	// lone is the stored-result lookup of a lone job, run beside its
	// account check (lone_lookup.go); nil when the batch looked up first.
	lone *loneLookup
	// keyed: the result subject names the job's own id, so a stored
	// result there is this job's.
	keyed bool
	// vault: what this delivery did with the job's vault entry.
	vault vaultEntry
}

// decode reads a delivery and decides everything the job alone decides:
// invalid_job, invalid_username, invalid_password, unknown_target, in
// that order (contract §3).
func (w *Worker) decode(d *delivery, start time.Time) *work {
	msg := d.msg
	hdr := d.headers()
	headerID := hdr.id
	body := msg.Data()
	published := streams.OriginalSubject(w.cfg.Prefix, msg.Subject())
	target := resultTarget(targetToken(w.cfg.Prefix, published))
	j := &work{d: d, start: start, res: wire.Result{ID: ResultID(headerID, body, d.seq), Target: target}}
	j.subject = wire.ResultSubject(w.cfg.Prefix, target, j.res.ID)
	j.keyed = validTarget(target) && !strings.HasPrefix(j.res.ID, "seq-")

	j.job, j.jerr = Parse(w.cfg.Prefix, published, headerID, body)
	if hdr.refused != nil {
		j.jerr = hdr.refused
	}
	if v := hdr.discard; v != "" && j.jerr == nil {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil || j.job.Op != wire.OpDiscardOldPassword {
			j.jerr = wire.Errorf(wire.CodeInvalidJob, "header %s is only for a discard_old_password job, with an RFC 3339 time", ScheduledDiscardHeader)
		}
		j.job.ScheduledUntil = t
	}
	j.res.Op = j.job.Op
	if j.res.Op == "" {
		j.res.Op = wire.Op(opToken(published))
	}
	if j.jerr == nil && !j.job.SealedPassword.IsZero() {
		j.password, j.jerr = w.openPassword(j.job)
	}
	if j.jerr == nil {
		var ok bool
		if j.ops, ok = w.cfg.Targets[j.job.Target]; !ok {
			j.jerr = wire.Errorf(wire.CodeUnknownTarget, "target %q is not configured on this worker", j.job.Target)
		}
	}
	return j
}

// runBatch works one batch of a lane to its outcomes and completes them.
func (w *Worker) runBatch(batch []*delivery) {
	start := time.Now()
	jobs := make([]*work, len(batch))
	for i, d := range batch {
		jobs[i] = w.decode(d, start)
	}
	c := &completer{w: w}
	if len(jobs) == 1 && overlapsLookup(jobs[0]) {
		j := jobs[0]
		j.lone = w.lookUpAlongside(j)
		done := w.cfg.Pacer.validJob()
		c.add(w.runAlone(j, j.password, false, nil))
		done()
		c.flush()
		return
	}
	// A job id already answered (republished after the duplicate window,
	// or redelivered after its result was stored) changes nothing: its
	// stored result is published again, whatever the body says now.
	stored, ok := w.lookupStored(jobs)
	if !ok {
		for _, j := range jobs {
			c.add(j.handBack("look up an earlier result", nil))
		}
		c.flush()
		return
	}
	for i := 0; i < len(jobs); {
		j := jobs[i]
		if c.handingBack {
			// Once a job goes back, every later one of the target goes
			// back too: none may run or be acked before it.
			c.add(j.handBack("stopping: an earlier job of the target was handed back", nil))
			i++
			continue
		}
		if data, found := stored[j.subject]; found && j.keyed {
			c.add(j.answerStored(data))
			i++
			continue
		}
		if j.jerr != nil {
			// Refused jobs wait their turn while valid ones run: a flood
			// of them must not slow other targets' jobs (Pacer). Not
			// while held jobs fill half the consumer's window, though:
			// then the flood's jobs hold back the partition's later jobs,
			// other targets' among them.
			if !w.windowFilling() {
				w.cfg.Pacer.refusal(w.stopCtx)
			}
			c.add(j.refused())
			if len(c.outs) >= refusedFlush {
				// A flood's answers go out in small rounds, so that a
				// valid job arriving meanwhile does not queue behind a
				// whole batch of them in the NATS server.
				c.flush()
			}
			i++
			continue
		}
		// Earlier answers are stored (and their jobs acked) before the
		// next statement of the target runs: the earlier answers go out
		// before a job that may retry for long, and a job whose statement
		// ran must not be redelivered, after a crash, without its result
		// once a later job has changed its account (a reset run again
		// after the account's delete answered user_not_found).
		c.flush()
		if c.handingBack {
			continue // the loop's top hands this job back, and the rest
		}
		n := w.group(jobs[i:], stored)
		done := w.cfg.Pacer.validJob()
		if n > 1 {
			w.runMany(c, jobs[i:i+n])
		} else {
			c.add(w.runAlone(j, j.password, false, nil))
		}
		done()
		i += n
	}
	c.flush()
}

// refusedFlush is how many answers a batch of refused jobs gathers
// before it publishes them.
const refusedFlush = 32

// group returns how many jobs from jobs[0] on run as one many-account
// batch: consecutive valid first deliveries of the same op (create,
// reset_password, delete) on distinct usernames, without a stored result.
// A batch ends at a username it already holds, so one account's jobs keep
// their order. 1 means the first job runs alone.
func (w *Worker) group(jobs []*work, stored map[string][]byte) int {
	first := jobs[0]
	if _, ok := first.ops.(BatchOps); !ok || !batchable(first) {
		return 1
	}
	names := map[string]struct{}{first.job.Username: {}}
	n := 1
	for _, j := range jobs[1:] {
		if j.jerr != nil || !batchable(j) || j.job.Op != first.job.Op || (j.job.KeepOldFor > 0) != (first.job.KeepOldFor > 0) {
			break
		}
		if _, found := stored[j.subject]; found && j.keyed {
			break
		}
		if _, dup := names[j.job.Username]; dup {
			break
		}
		names[j.job.Username] = struct{}{}
		n++
	}
	return n
}

// batchable: a job that may join a many-account statement. A redelivery
// runs alone: its earlier delivery may have sent its statement, which the
// one-account operation's intent rules sort out.
func batchable(j *work) bool {
	switch j.job.Op {
	case wire.OpCreate, wire.OpResetPassword, wire.OpDelete:
		return j.d.delivered == 1
	}
	return false
}

// lookupStored reads the stored results of the batch's keyed jobs in one
// batched direct get, retrying while the worker runs; ok=false when it
// stops first.
func (w *Worker) lookupStored(jobs []*work) (map[string][]byte, bool) {
	var subjects []string
	for _, j := range jobs {
		if j.keyed {
			subjects = append(subjects, j.subject)
		}
	}
	if len(subjects) == 0 {
		return nil, true
	}
	var stored map[string][]byte
	err := w.holdRetry("look up the stored results", jobs[0].d, func() error {
		var err error
		stored, err = w.lookupMany(subjects)
		return err
	})
	return stored, err == nil
}

// process works one job as a batch of its own (unit tests).
func (w *Worker) process(d *delivery) {
	if d.seq == 0 {
		if meta, err := d.msg.Metadata(); err == nil {
			d.seq, d.delivered = meta.Sequence.Stream, max(meta.NumDelivered, 1)
		}
	}
	if d.delivered == 0 {
		d.delivered = 1
	}
	w.runBatch([]*delivery{d})
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

func (w *Worker) openPassword(job Job) (secret.Secret, *wire.Error) {
	pw, err := w.cfg.Keys.OpenPassword(job.SealedPassword, job.ReplyKey, job.ID)
	if err != nil {
		return secret.Secret{}, wire.Errorf(wire.CodeInvalidPassword, "the sealed password does not open with reply_key as sender and this worker's key, or was sealed for another job id: %v", err)
	}
	if perr := wire.CheckPassword(pw.Reveal()); perr != nil {
		return secret.Secret{}, perr
	}
	return pw, nil
}
