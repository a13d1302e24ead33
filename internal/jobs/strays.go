package jobs

import (
	"context"
	"time"

	"github.com/dbusers/dbusers/wire"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// StoredJob is a job read from the jobs stream by sequence, outside a
// consumer.
type StoredJob struct {
	Seq     uint64
	Subject string // as stored
	Header  nats.Header
	Data    []byte
}

// StrayStore finds and removes the jobs that no consumer of the worker
// reads (streams.ReadByConsumer).
type StrayStore interface {
	// Strays returns up to max such jobs, oldest first.
	Strays(ctx context.Context, max int) ([]StoredJob, error)
	// Erase deletes a job and overwrites its bytes.
	Erase(ctx context.Context, seq uint64) error
}

// StraySweeper answers the jobs that the stream stored where no consumer
// reads them: a job published on a subject with a wildcard token
// ("P.jobs.t.user.*", "P.jobs.*.user.list", "P.jobs.t.>") is stored
// without the partition rewrite, outside every consumer's filter. Each is
// invalid_job; its result is published only where none is stored yet, so
// the sweepers of several processes answer a job once between them.
type StraySweeper struct {
	Prefix  string
	Store   StrayStore
	Results ResultStore
	// Every is the pause between sweeps; a minute when zero.
	Every    time.Duration
	Logger   *zap.Logger
	Observer Observer
}

// straysPerSweep bounds one sweep's reads.
const straysPerSweep = 256

// Run sweeps until ctx ends.
func (s *StraySweeper) Run(ctx context.Context) {
	every := s.Every
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		for s.Sweep(ctx) == straysPerSweep {
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep answers and removes the stray jobs it finds, up to straysPerSweep,
// and returns how many it answered.
func (s *StraySweeper) Sweep(ctx context.Context) int {
	log, obs := s.Logger, s.Observer
	if log == nil {
		log = zap.NewNop()
	}
	if obs == nil {
		obs = nopObserver{}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	found, err := s.Store.Strays(ctx, straysPerSweep)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("look for jobs no consumer reads", zap.Error(err))
		}
		return 0
	}
	answered := 0
	for _, j := range found {
		headerID := j.Header.Get(nats.MsgIdHdr)
		target := resultTarget(targetToken(s.Prefix, j.Subject))
		res := wire.Result{ID: ResultID(headerID, j.Data, j.Seq), Target: target, Op: wire.Op(opToken(j.Subject))}
		job, jerr := Parse(s.Prefix, j.Subject, headerID, j.Data)
		if job.Op != "" {
			res.Op = job.Op
		}
		if jerr == nil || jerr.Code != wire.CodeInvalidJob {
			// Every stray subject breaks the subject grammar; say so even
			// where the body was the first fault found.
			jerr = wire.Errorf(wire.CodeInvalidJob, "the job's subject %s has a wildcard token; publish it on %s.jobs.<target>.user.<op>",
				wire.Quote(j.Subject), s.Prefix)
		}
		res.Status, res.Error, res.Attempts, res.CompletedAt = wire.StatusError, jerr, 1, time.Now().UTC()
		subject := wire.ResultSubject(s.Prefix, target, res.ID)
		if _, err := s.Results.PublishNew(ctx, subject, res.AppendJSON(nil)); err != nil {
			log.Warn("answer a job no consumer reads", zap.Uint64("seq", j.Seq), zap.Error(err))
			continue
		}
		if err := s.Store.Erase(ctx, j.Seq); err != nil {
			log.Warn("remove an answered job no consumer reads", zap.Uint64("seq", j.Seq), zap.Error(err))
			continue
		}
		answered++
		log.Info("job", zap.String("job_id", res.ID), zap.String("target", target), zap.String("op", string(res.Op)),
			zap.String("outcome", wire.StatusError), zap.String("code", string(jerr.Code)), zap.String("error", jerr.Message))
		obs.JobDone(res.Op, wire.StatusError, jerr.Code, 0)
	}
	return answered
}

// resultTarget is the target token of a result subject: the job's own, or
// "_" where it is a wildcard, which a result subject cannot carry.
func resultTarget(token string) string {
	if token == "*" || token == ">" || token == "" {
		return "_"
	}
	return token
}
