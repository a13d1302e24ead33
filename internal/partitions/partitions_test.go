package partitions

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dbusers/dbusers/internal/natstest"
)

func leasesBucket(t *testing.T, ttl time.Duration) jetstream.KeyValue {
	t.Helper()
	_, js := natstest.Connect(t, natstest.Run(t, natstest.Options{}))
	kv, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: "LEASES", TTL: ttl, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// runners counts which partitions are being worked, and by whom.
type runners struct {
	mu      sync.Mutex
	working map[int]string
	double  int // a partition worked by two balancers at once
}

func (r *runners) run(id string) Runner {
	return func(ctx context.Context, n int) {
		r.mu.Lock()
		if _, busy := r.working[n]; busy {
			r.double++
		}
		r.working[n] = id
		r.mu.Unlock()
		<-ctx.Done()
		r.mu.Lock()
		delete(r.working, n)
		r.mu.Unlock()
	}
}

func (r *runners) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, who := range r.working {
		if who == id {
			n++
		}
	}
	return n
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 15s: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBalancersShareAndTakeOver: one balancer takes every partition; a
// second one gets a fair share; when the first stops, the second takes all;
// no partition is ever worked twice at once.
func TestBalancersShareAndTakeOver(t *testing.T) {
	const ttl = 1500 * time.Millisecond
	kv := leasesBucket(t, ttl)
	r := &runners{working: map[int]string{}}
	start := func(id string) (*Balancer, context.CancelFunc, chan struct{}) {
		b := New(Config{KV: kv, ID: id, Partitions: 6, TTL: ttl, Run: r.run(id)})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); b.Run(ctx, nil) }()
		t.Cleanup(func() { cancel(); <-done })
		return b, cancel, done
	}

	a, stopA, doneA := start("a")
	eventually(t, "a works all 6 partitions", func() bool { return r.count("a") == 6 && len(a.Held()) == 6 })

	start("b")
	eventually(t, "a and b work 3 partitions each", func() bool { return r.count("a") == 3 && r.count("b") == 3 })

	stopA()
	<-doneA
	eventually(t, "b works all 6 after a stopped", func() bool { return r.count("b") == 6 })
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.double != 0 {
		t.Fatalf("%d times a partition was worked by two balancers at once", r.double)
	}
}

// TestDeadBalancersPartitionsMoveAfterTTL: a process that dies without
// releasing (its leases just stop being renewed) loses its partitions to
// the others once the TTL has passed.
func TestDeadBalancersPartitionsMoveAfterTTL(t *testing.T) {
	const ttl = 1500 * time.Millisecond
	kv := leasesBucket(t, ttl)
	// A dead process's leases and member key, never renewed.
	for _, k := range []string{"partition.0", "partition.1", "member.dead"} {
		if _, err := kv.Put(t.Context(), k, []byte("dead")); err != nil {
			t.Fatal(err)
		}
	}
	r := &runners{working: map[int]string{}}
	b := New(Config{KV: kv, ID: "live", Partitions: 2, TTL: ttl, Run: r.run("live")})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(ttl / 2)
	if n := r.count("live"); n != 0 {
		t.Fatalf("took %d partitions still leased by another process", n)
	}
	eventually(t, "the live process takes both after the TTL", func() bool { return r.count("live") == 2 })
}

// TestStoppedRunnersPartitionIsTakenAgain: a runner that stops while its
// lease is still held (as one does when its deadline passes before a slow
// renewal comes through) does not leave the partition leased with no one
// working it: it is given up and taken again.
func TestStoppedRunnersPartitionIsTakenAgain(t *testing.T) {
	const ttl = 1500 * time.Millisecond
	kv := leasesBucket(t, ttl)
	r := &runners{working: map[int]string{}}
	var mu sync.Mutex
	runs := 0
	work := r.run("a")
	b := New(Config{KV: kv, ID: "a", Partitions: 1, TTL: ttl, Run: func(ctx context.Context, n int) {
		mu.Lock()
		runs++
		first := runs == 1
		mu.Unlock()
		if first {
			return // stops at once, its lease held
		}
		work(ctx, n)
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "the partition is worked again after its runner stopped", func() bool { return r.count("a") == 1 })
	if held := b.Held(); len(held) != 1 {
		t.Fatalf("held %v, want partition 0", held)
	}
}
