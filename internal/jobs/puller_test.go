package jobs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dbusers/dbusers/internal/natstest"
)

// pullerFixture is a work-queue stream with one pull consumer and a
// Puller of it whose deliveries arrive on got.
type pullerFixture struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	p      *Puller
	got    chan jetstream.Msg
	warned chan error
}

func newPullerFixture(t *testing.T, batch int) *pullerFixture {
	t.Helper()
	nc, js := natstest.Connect(t, natstest.Run(t, natstest.Options{}))
	ctx := t.Context()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PULL", Subjects: []string{"pull.>"},
		Retention: jetstream.WorkQueuePolicy})
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "c",
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	f := &pullerFixture{js: js, stream: stream, got: make(chan jetstream.Msg, 1000), warned: make(chan error, 100)}
	f.p = NewPuller(nc, "", consumer, func(err error) {
		select {
		case f.warned <- err:
		default:
		}
	})
	f.p.batch, f.p.heartbeat, f.p.expires = batch, 100*time.Millisecond, time.Second
	return f
}

// start runs Pull until the test ends; it returns once Pull takes jobs.
func (f *pullerFixture) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done, started := make(chan error, 1), make(chan struct{})
	go func() { done <- f.p.Pull(ctx, func(m jetstream.Msg) { f.got <- m }, func() { close(started) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Pull: %v", err)
		}
	})
	<-started
}

func (f *pullerFixture) publish(t *testing.T, msg *nats.Msg) {
	t.Helper()
	if _, err := f.js.PublishMsg(t.Context(), msg); err != nil {
		t.Fatal(err)
	}
}

func (f *pullerFixture) next(t *testing.T) jetstream.Msg {
	t.Helper()
	select {
	case m := <-f.got:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message delivered")
		return nil
	}
}

// TestPullerDeliversWhatALibraryTakesForStatus: stored messages whose
// empty bodies and Status headers look like the server's status messages
// are delivered, with their metadata, and acks reach the server.
func TestPullerDeliversWhatALibraryTakesForStatus(t *testing.T) {
	t.Parallel()
	f := newPullerFixture(t, 8)
	f.start(t)
	statuses := []map[string]string{
		{"Status": "404", "Description": "No Messages"},
		{"Status": "408", "Description": "Request Timeout", "Nats-Pending-Messages": "8"},
		{"Status": "100", "Description": "Idle Heartbeat"},
		{"Status": "409", "Description": "Consumer Deleted"},
		{},
	}
	for i, h := range statuses {
		msg := nats.NewMsg(fmt.Sprintf("pull.%d", i))
		for k, v := range h {
			msg.Header.Set(k, v)
		}
		f.publish(t, msg)
	}
	for i, h := range statuses {
		m := f.next(t)
		meta, err := m.Metadata()
		if err != nil {
			t.Fatalf("message %d: metadata: %v", i, err)
		}
		if meta.Sequence.Stream != uint64(i+1) || meta.NumDelivered != 1 || m.Subject() != fmt.Sprintf("pull.%d", i) {
			t.Fatalf("message %d: sequence %d, delivery %d, subject %s", i, meta.Sequence.Stream, meta.NumDelivered, m.Subject())
		}
		if got := m.Headers().Get("Status"); got != h["Status"] {
			t.Fatalf("message %d: Status %q, want %q", i, got, h["Status"])
		}
		if err := m.DoubleAck(t.Context()); err != nil {
			t.Fatalf("message %d: ack: %v", i, err)
		}
	}
	info, err := f.stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Fatalf("%d messages left in the work queue after their acks", info.State.Msgs)
	}
}

// TestPullerAsksAgain: more messages than one pull asks for all arrive,
// and after the consumer is re-created (its pulls lost) new ones arrive
// too, once the missed heartbeats are noticed.
func TestPullerAsksAgain(t *testing.T) {
	t.Parallel()
	f := newPullerFixture(t, 4)
	f.start(t)
	for i := range 10 {
		f.publish(t, nats.NewMsg(fmt.Sprintf("pull.%d", i)))
	}
	for range 10 {
		if err := f.next(t).DoubleAck(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	ctx := t.Context()
	if err := f.stream.DeleteConsumer(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "c",
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute}); err != nil {
		t.Fatal(err)
	}
	f.publish(t, nats.NewMsg("pull.after"))
	if m := f.next(t); m.Subject() != "pull.after" {
		t.Fatalf("delivered %s, want pull.after", m.Subject())
	}
}
