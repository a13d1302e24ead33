package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/dbusers/dbusers/wire"
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

// TestRefusalsUnpacedWhileTheWindowFills: while a valid job runs, a
// refused job takes a turn of the pacer, unless the worker's held jobs
// fill half the consumer's window: then the refused jobs are what holds
// back the partition's later jobs, and they are answered at once.
func TestRefusalsUnpacedWhileTheWindowFills(t *testing.T) {
	tests := []struct {
		name      string
		held      int // of a window of 8
		wantPaced bool
	}{
		{"window free", 0, true},
		{"window under half full", 3, true},
		{"window half full", 4, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, time.Second)
			h.w.cfg.Pacer, h.w.cfg.Window = NewPacer(2), 8 // a turn every 500 ms
			h.w.held = tt.held
			defer h.w.cfg.Pacer.validJob()()
			_, res := h.run(t, "delete", "r1", `{"id":"r1","username":"Bad Name!"}`)
			if res.Error == nil || res.Error.Code != wire.CodeInvalidUsername {
				t.Fatalf("result %+v, want invalid_username", res)
			}
			// A turn taken leaves the limiter's one token spent; it comes
			// back at 2 a second, so well under one token means paced.
			if paced := h.w.cfg.Pacer.refused.Tokens() < 0.8; paced != tt.wantPaced {
				t.Fatalf("paced = %v, want %v", paced, tt.wantPaced)
			}
		})
	}
}
