package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The puller asks a consumer for jobs itself rather than through nats.go's
// Consume. Consume takes any message with an empty body and a Status header
// for one of the server's status messages and drops it, so a job published
// that way would never be answered and never leave the stream. Here a
// message is a job when its reply subject is an ack subject, which only
// the server sets on a stored message it delivers; every other message is
// the server's own (heartbeats, expired pulls).

// Source delivers jobs until ctx ends; Run works them. It calls started,
// when not nil, once it is taking jobs.
type Source interface {
	Pull(ctx context.Context, deliver func(jetstream.Msg), started func()) error
}

var _ Source = (*Puller)(nil)

// Puller pulls a JetStream consumer's messages over a core subscription.
type Puller struct {
	nc   *nats.Conn
	next string // the consumer's MSG.NEXT API subject
	warn func(error)
	// batch is how many messages may be asked for and not yet arrived;
	// a new pull asks for the rest once half have arrived.
	batch     int
	expires   time.Duration
	heartbeat time.Duration
}

// NewPuller returns a Puller of consumer, asking the JetStream API under
// apiPrefix ("$JS.API" when empty). warn hears of failed pulls and lost
// heartbeats, which the Puller recovers from on its own.
func NewPuller(nc *nats.Conn, apiPrefix string, consumer jetstream.Consumer, warn func(error)) *Puller {
	if apiPrefix == "" {
		apiPrefix = "$JS.API"
	}
	info := consumer.CachedInfo()
	return &Puller{
		nc:        nc,
		next:      fmt.Sprintf("%s.CONSUMER.MSG.NEXT.%s.%s", strings.TrimSuffix(apiPrefix, "."), info.Stream, info.Name),
		warn:      warn,
		batch:     512,
		expires:   30 * time.Second,
		heartbeat: 2 * time.Second,
	}
}

// pullRequest is the body of a MSG.NEXT request.
type pullRequest struct {
	Batch     int           `json:"batch"`
	Expires   time.Duration `json:"expires"`
	Heartbeat time.Duration `json:"idle_heartbeat"`
}

// ackPrefix starts the reply subject of every message a consumer delivers.
const ackPrefix = "$JS.ACK."

// Pull delivers the consumer's messages until ctx ends. Messages that
// arrived before then are delivered before it returns, so none waits out
// an ack wait for nothing.
func (p *Puller) Pull(ctx context.Context, deliver func(jetstream.Msg), started func()) error {
	inbox := p.nc.NewInbox()
	// Never more than batch messages are asked for at once; the rest of
	// the room is for the server's status messages.
	ch := make(chan *nats.Msg, 2*p.batch)
	sub, err := p.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return fmt.Errorf("subscribe to pulled jobs: %w", err)
	}
	asked := 0 // messages asked for that have not arrived
	pull := func() {
		n := p.batch - asked
		if n < p.batch/2 {
			return
		}
		body, _ := json.Marshal(pullRequest{Batch: n, Expires: p.expires, Heartbeat: p.heartbeat})
		if err := p.nc.PublishRequest(p.next, inbox, body); err != nil {
			p.warn(fmt.Errorf("ask for jobs: %w", err))
			return
		}
		asked += n
	}
	handle := func(m *nats.Msg) {
		if strings.HasPrefix(m.Reply, ackPrefix) {
			asked = max(asked-1, 0)
			deliver(pulledMsg{m, p.nc})
			return
		}
		asked = max(asked-p.status(m), 0)
	}
	pull()
	if started != nil {
		started()
	}
	// Two heartbeats missed: the pulls are lost (a reconnect, a consumer
	// re-created or moved); ask again.
	lost := time.NewTimer(2 * p.heartbeat)
	defer lost.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = sub.Unsubscribe()
			for {
				select {
				case m := <-ch:
					handle(m)
				default:
					return nil
				}
			}
		case m := <-ch:
			handle(m)
			lost.Reset(2 * p.heartbeat)
		case <-lost.C:
			if asked > 0 {
				p.warn(errors.New("no heartbeat from the jobs consumer; asking again"))
			}
			asked = 0
			lost.Reset(2 * p.heartbeat)
		}
		pull()
	}
}

// status reads one of the server's status messages and returns how many
// asked-for messages it says will not come.
func (p *Puller) status(m *nats.Msg) int {
	code, descr := m.Header.Get("Status"), m.Header.Get("Description")
	switch code {
	case "100": // idle heartbeat
		return 0
	case "404", "408", "409":
		// An expired or ended pull tells how many of its messages it did
		// not deliver; a 409 other than an expiry is worth knowing.
		if code == "409" && !strings.Contains(strings.ToLower(descr), "exceeded") {
			p.warn(fmt.Errorf("jobs consumer: %s %s", code, descr))
		}
		if n, err := strconv.Atoi(m.Header.Get("Nats-Pending-Messages")); err == nil {
			return n
		}
		return 0
	default:
		p.warn(fmt.Errorf("jobs consumer: %s %s", code, descr))
		return 0
	}
}

// pulledMsg is a delivered job; acks go to its reply subject.
type pulledMsg struct {
	m  *nats.Msg
	nc *nats.Conn
}

var _ jetstream.Msg = pulledMsg{}

func (p pulledMsg) Metadata() (*jetstream.MsgMetadata, error) {
	md, err := p.m.Metadata()
	if err != nil {
		return nil, err
	}
	return &jetstream.MsgMetadata{
		Sequence:     jetstream.SequencePair{Consumer: md.Sequence.Consumer, Stream: md.Sequence.Stream},
		NumDelivered: md.NumDelivered,
		NumPending:   md.NumPending,
		Timestamp:    md.Timestamp,
		Stream:       md.Stream,
		Consumer:     md.Consumer,
		Domain:       md.Domain,
	}, nil
}

// releaseHeaders drops the parsed headers once the worker has read them
// (newDelivery); nothing later needs them, acks included.
func (p pulledMsg) releaseHeaders() { p.m.Header = nil }

var _ headerReleaser = pulledMsg{}

func (p pulledMsg) Data() []byte                       { return p.m.Data }
func (p pulledMsg) Headers() nats.Header               { return p.m.Header }
func (p pulledMsg) Subject() string                    { return p.m.Subject }
func (p pulledMsg) Reply() string                      { return p.m.Reply }
func (p pulledMsg) Ack() error                         { return p.m.Ack() }
func (p pulledMsg) Nak() error                         { return p.m.Nak() }
func (p pulledMsg) NakWithDelay(d time.Duration) error { return p.m.NakWithDelay(d) }
func (p pulledMsg) InProgress() error                  { return p.m.InProgress() }
func (p pulledMsg) Term() error                        { return p.m.Term() }

func (p pulledMsg) DoubleAck(ctx context.Context) error {
	return p.m.AckSync(nats.Context(ctx))
}

func (p pulledMsg) TermWithReason(reason string) error {
	return p.nc.Publish(p.m.Reply, []byte("+TERM "+reason))
}
