// Package partitions owns which worker process works which partition of the
// jobs stream. Each process heartbeats a member key and holds leases on a
// fair share of the partitions (ceil(partitions / live members)) in a
// key-value bucket whose TTL expires the keys of a dead process; a process
// with more than its share hands the extra partitions back once their
// running jobs finish, and a process with fewer takes free ones. A lease
// held means one process consumes that partition, which keeps each target's
// jobs in one place; the worker's own order check (jobs.Pending) keeps them
// in order across the hand-over.
package partitions

import (
	"context"
	"errors"
	"hash/fnv"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Runner works partition n until ctx ends, then hands back what it has not
// finished and returns. When ctx ends with the cause ErrLeaseLost, another
// process may soon work the partition: the runner must stop at once.
type Runner func(ctx context.Context, n int)

// ErrLeaseLost is the cause of a runner's context that ends because its
// lease could not be renewed in time, or is held by another process.
var ErrLeaseLost = errors.New("the partition's lease could not be renewed in time")

// Config is what a Balancer is built from.
type Config struct {
	KV         jetstream.KeyValue // the leases bucket; its TTL is the lease TTL
	ID         string             // this process, unique among the workers
	Partitions int
	TTL        time.Duration // the bucket's TTL
	Run        Runner
	Logger     *zap.Logger
}

// Balancer holds this process's share of partition leases and runs a Runner
// for each.
type Balancer struct {
	cfg Config
	log *zap.Logger

	mu     sync.Mutex
	leases map[int]*lease
}

type lease struct {
	rev       uint64
	renewed   time.Time
	releasing bool
	cancel    context.CancelCauseFunc
	// deadline ends the runner with ErrLeaseLost at half the TTL after
	// the last renewal; each renewal pushes it back.
	deadline *time.Timer
	done     chan struct{}
}

// New returns a Balancer.
func New(cfg Config) *Balancer {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Balancer{cfg: cfg, log: cfg.Logger, leases: map[int]*lease{}}
}

func partitionKey(n int) string       { return "partition." + strconv.Itoa(n) }
func (b *Balancer) memberKey() string { return "member." + b.cfg.ID }

// Held returns the partitions this process holds, sorted.
func (b *Balancer) Held() []int {
	b.mu.Lock()
	defer b.mu.Unlock()
	held := make([]int, 0, len(b.leases))
	for n := range b.leases {
		held = append(held, n)
	}
	sort.Ints(held)
	return held
}

// Run balances until ctx ends, then stops every runner (each hands back
// its jobs), releases the leases and returns. ready is called after the
// first round.
func (b *Balancer) Run(ctx context.Context, ready func()) {
	ticker := time.NewTicker(b.cfg.TTL / 3)
	defer ticker.Stop()
	b.round(ctx)
	if ready != nil {
		ready()
	}
	for {
		select {
		case <-ctx.Done():
			b.stopAll()
			return
		case <-ticker.C:
			b.round(ctx)
		}
	}
}

// round is one heartbeat: renew, shed or take leases.
func (b *Balancer) round(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, b.cfg.TTL/3)
	defer cancel()
	if _, err := b.cfg.KV.Put(rctx, b.memberKey(), []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		b.log.Warn("partition heartbeat", zap.Error(err))
	}
	members := b.countMembers(rctx)
	fair := (b.cfg.Partitions + members - 1) / members

	b.mu.Lock()
	defer b.mu.Unlock()
	active := 0
	for n, l := range b.leases {
		select {
		case <-l.done:
			if l.releasing {
				// Its jobs are done or handed back: let another take it.
				_ = b.cfg.KV.Delete(rctx, partitionKey(n), jetstream.LastRevision(l.rev))
				delete(b.leases, n)
				b.log.Info("partition released", zap.Int("partition", n))
				continue
			}
			// The runner stopped on its own: its deadline passed before a
			// renewal came through (a slow round), though the renewal may
			// yet succeed. Renewed, the lease would keep the partition
			// from every process, this one included, with no runner:
			// give it up, so that it is taken again, here or elsewhere.
			l.deadline.Stop()
			_ = b.cfg.KV.Delete(rctx, partitionKey(n), jetstream.LastRevision(l.rev))
			delete(b.leases, n)
			b.log.Warn("partition given up: its runner stopped", zap.Int("partition", n))
			continue
		default:
		}
		rev, err := b.cfg.KV.Update(rctx, partitionKey(n), []byte(b.cfg.ID), l.rev)
		switch {
		case err == nil:
			l.rev, l.renewed = rev, time.Now()
			l.deadline.Reset(b.cfg.TTL / 2)
		case errors.Is(err, jetstream.ErrKeyExists) || time.Since(l.renewed) >= b.cfg.TTL/2:
			// Someone else holds it now, or it may expire soon: stop at
			// once (the deadline timer has, or is about to).
			b.log.Warn("partition lease lost", zap.Int("partition", n), zap.Error(err))
			l.deadline.Stop()
			l.cancel(ErrLeaseLost)
			delete(b.leases, n)
			continue
		default:
			b.log.Warn("partition lease renewal", zap.Int("partition", n), zap.Error(err))
		}
		if !l.releasing {
			active++
		}
	}
	// Shed the extra partitions, highest first; they stay leased until
	// their runners have finished.
	for n := b.cfg.Partitions - 1; n >= 0 && active > fair; n-- {
		if l, ok := b.leases[n]; ok && !l.releasing {
			l.releasing = true
			l.cancel(nil)
			active--
			b.log.Info("partition handed back for balance", zap.Int("partition", n), zap.Int("members", members))
		}
	}
	if active >= fair {
		return
	}
	// Take free partitions, starting at a place of this process's own so
	// that processes starting together do not all race for partition 0.
	h := fnv.New32a()
	_, _ = h.Write([]byte(b.cfg.ID))
	start := int(h.Sum32() % uint32(b.cfg.Partitions))
	for i := 0; i < b.cfg.Partitions && active < fair; i++ {
		n := (start + i) % b.cfg.Partitions
		if _, ok := b.leases[n]; ok {
			continue
		}
		rev, err := b.cfg.KV.Create(rctx, partitionKey(n), []byte(b.cfg.ID))
		if err != nil {
			continue // held by another process, or NATS is away: next round
		}
		runCtx, runCancel := context.WithCancelCause(context.Background())
		l := &lease{rev: rev, renewed: time.Now(), cancel: runCancel, done: make(chan struct{})}
		l.deadline = time.AfterFunc(b.cfg.TTL/2, func() { runCancel(ErrLeaseLost) })
		b.leases[n] = l
		active++
		go func() {
			defer close(l.done)
			b.cfg.Run(runCtx, n)
		}()
		b.log.Info("partition taken", zap.Int("partition", n), zap.Int("members", members))
	}
}

func (b *Balancer) countMembers(ctx context.Context) int {
	lister, err := b.cfg.KV.ListKeysFiltered(ctx, "member.*")
	if err != nil {
		return 1
	}
	n := 0
	for range lister.Keys() {
		n++
	}
	return max(n, 1)
}

// stopAll stops every runner, waits for them, and gives the leases and the
// member key up so that the others take over without waiting for the TTL.
func (b *Balancer) stopAll() {
	b.mu.Lock()
	leases := b.leases
	b.leases = map[int]*lease{}
	b.mu.Unlock()
	for _, l := range leases {
		l.deadline.Stop()
		l.cancel(nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for n, l := range leases {
		<-l.done
		if err := b.cfg.KV.Delete(ctx, partitionKey(n), jetstream.LastRevision(l.rev)); err != nil {
			b.log.Debug("release partition", zap.Int("partition", n), zap.Error(err))
		}
	}
	_ = b.cfg.KV.Delete(ctx, b.memberKey())
}
