package jobs

import (
	"context"
	"sync/atomic"

	"golang.org/x/time/rate"
)

// DefaultRefusalRate is how many refused jobs per second a Pacer answers
// while valid jobs run. At 500, B's jobs in TestFloodOfInvalidJobs took
// 1.45-2.0 times their time alone; at 100, 1.4-1.8, close to the 1.25-1.4
// the NATS server's intake of the flood costs by itself. 100 a second
// still answers an orchestrator's occasional bad job at once during a
// long bulk rotation.
const DefaultRefusalRate = 100

// Pacer makes refused jobs (answered from the job alone: invalid, unknown
// target, unreadable password) yield to valid ones. While any valid job of
// the workers sharing it is being worked on, refused answers are paced to a
// fixed rate; when none is, they go at full speed.
//
// Why: one refusal is cheap, but a publisher flooding a target with
// thousands of invalid jobs makes the worker, NATS and the publisher
// compete for the same CPUs, and every other target's jobs slow down with
// them (TestFloodOfInvalidJobs: B's valid jobs beside A's flood of
// invalid ones). Valid
// jobs change accounts somebody waits for; the flood's answers can wait a
// little. Every refused job is still answered.
//
// One Pacer is shared by all the workers of a process, so that a flood
// spread over many targets is paced as a whole. A worker whose held jobs
// fill half its consumer's window answers refusals without pacing: a
// flood larger than that would otherwise hold back the partition's later
// jobs, other targets' among them, which arrive only as the window frees.
type Pacer struct {
	valid   atomic.Int64
	refused *rate.Limiter
}

// NewPacer returns a Pacer that answers at most perSecond refused jobs per
// second while valid jobs run (DefaultRefusalRate when perSecond <= 0).
func NewPacer(perSecond int) *Pacer {
	if perSecond <= 0 {
		perSecond = DefaultRefusalRate
	}
	return &Pacer{refused: rate.NewLimiter(rate.Limit(perSecond), 1)}
}

// validJob records that a valid job is being worked on until done is
// called.
func (p *Pacer) validJob() (done func()) {
	p.valid.Add(1)
	return func() { p.valid.Add(-1) }
}

// refusal waits, while valid jobs run, for a refused job's turn to be
// answered. It returns at once when no valid job runs or ctx ends (a
// stopping worker answers what it holds without waiting).
func (p *Pacer) refusal(ctx context.Context) {
	if p.valid.Load() == 0 {
		return
	}
	_ = p.refused.Wait(ctx)
}
