package jobs

import (
	"context"
	"testing"
	"time"
)

// TestPacerPacesRefusalsOnlyWhileValidJobsRun: refusals take no turn while
// no valid job runs, and are held to the rate while one does, until it
// is done.
func TestPacerPacesRefusalsOnlyWhileValidJobsRun(t *testing.T) {
	const rate, n = 200, 21
	p := NewPacer(rate)

	for range n {
		p.refusal(t.Context())
	}
	if tokens := p.refused.Tokens(); tokens < 1 {
		t.Fatalf("refusals with no valid job running took turns (%v tokens left)", tokens)
	}

	done := p.validJob()
	start := time.Now()
	for range n {
		p.refusal(t.Context())
	}
	// n refusals at rate per second, the first free: a lower bound, which
	// a slow machine cannot break.
	if took, least := time.Since(start), (n-1)*time.Second/rate; took < least {
		t.Fatalf("%d refusals beside a valid job took %v, want at least %v", n, took, least)
	}
	done()
	if p.valid.Load() != 0 {
		t.Fatalf("%d valid jobs counted after the only one was done", p.valid.Load())
	}

	// A stopping worker answers at once.
	defer p.validJob()()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start = time.Now()
	for range n {
		p.refusal(ctx)
	}
	if took := time.Since(start); took >= (n-1)*time.Second/rate {
		t.Fatalf("refusals of a stopping worker waited %v", took)
	}
}
