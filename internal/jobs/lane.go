package jobs

import (
	"time"
)

// maxBatch bounds the jobs a lane takes at once: everything queued, up to
// this. A batch is what is waiting when the lane is free; nothing waits
// to fill one, so a single job is not slowed.
const maxBatch = 256

// lane is one target's queue of jobs, in stream order, and the goroutine
// that works them one batch after another.
type lane struct {
	key   string
	queue []*delivery
	// seqs are the lane's jobs, queued or running, by stream sequence:
	// a job delivered again while the lane holds it is not queued twice.
	seqs map[uint64]*delivery
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

// runLane works one lane's jobs in order, a batch at a time, and ends when
// the lane is empty.
func (w *Worker) runLane(l *lane) {
	defer w.running.Done()
	for {
		w.mu.Lock()
		if len(l.queue) == 0 || w.stopping {
			delete(w.lanes, l.key)
			w.mu.Unlock()
			return
		}
		batch := w.take(l)
		w.mu.Unlock()
		w.runBatch(batch)
		w.mu.Lock()
		for _, d := range batch {
			delete(l.seqs, d.seq)
		}
		w.held -= len(batch)
		w.mu.Unlock()
	}
}

// take removes the lane's next batch from its queue: every queued job up
// to maxBatch, stopping before a job whose id repeats one taken (a job
// republished after the duplicate window must see the first one's
// result, which is not stored yet). w.mu held.
func (w *Worker) take(l *lane) []*delivery {
	n := min(len(l.queue), maxBatch)
	ids := make(map[string]struct{}, n)
	for i, d := range l.queue[:n] {
		id := ResultID(d.headers().id, d.msg.Data(), d.seq)
		if _, dup := ids[id]; dup {
			n = i
			break
		}
		ids[id] = struct{}{}
	}
	batch := make([]*delivery, n)
	copy(batch, l.queue[:n])
	clear(l.queue[:n])
	l.queue = l.queue[n:]
	if len(l.queue) == 0 {
		l.queue = nil // let the backing array go
	}
	return batch
}
