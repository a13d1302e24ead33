package jobs

import (
	"strings"

	"github.com/dbusers/dbusers/wire"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// serverHeaders are the headers that nats-server itself writes on the
// messages it hands out: a direct get's or a republished message's stream
// metadata, a sourced message's origin. A publisher can set them too, and the
// stream stores them as it stores any header; a direct get then appends the
// server's own values after the stored ones. A job carrying one is a
// reflection (a direct-get answer sent to a job subject as its reply) or a
// forgery, and is refused: nothing may mistake it for the server's word.
var serverHeaders = []string{
	"Nats-Stream", "Nats-Sequence", "Nats-Subject", "Nats-Time-Stamp",
	"Nats-Num-Pending", "Nats-Last-Sequence", "Nats-UpTo-Sequence",
	"Nats-Stream-Source", "Nats-Last-Consumer", "Nats-Last-Stream",
	"Nats-Consumer-Stalled", "Nats-Pending-Messages", "Nats-Pending-Bytes",
	// A status line: nats.go reads an empty message with it as a control
	// message (no messages, timeout, conflict) and never hands it over.
	"Status", "Description",
}

// CheckHeaders refuses a job that carries a header of the server's own
// metadata (serverHeaders): invalid_job, decided from the job alone.
func CheckHeaders(h nats.Header) *wire.Error {
	for key := range h {
		for _, name := range serverHeaders {
			if strings.EqualFold(key, name) {
				return wire.Errorf(wire.CodeInvalidJob, "the job carries the header %s, which only the NATS server may set (a direct-get answer "+
					"sent to a job subject as its reply, or a forgery); publish jobs with no header but Nats-Msg-Id", name)
			}
		}
	}
	return nil
}

// jobHeaders is what the worker reads from a job's headers. It is taken
// when the job is delivered, and the headers themselves let go: a parsed
// header is a map per message, and the consumer's window holds up to
// streams.MaxAckPending queued jobs (a third of their memory).
type jobHeaders struct {
	read    bool
	id      string      // Nats-Msg-Id
	refused *wire.Error // CheckHeaders' verdict
	discard string      // ScheduledDiscardHeader
}

// headerReleaser is a delivered message that can let go of its parsed
// headers (pulledMsg).
type headerReleaser interface{ releaseHeaders() }

// headers returns what the job's headers say, reading them the first
// time (a delivery made by hand, in tests, reads them late).
func (d *delivery) headers() *jobHeaders {
	if !d.hdr.read {
		h := d.msg.Headers()
		d.hdr = jobHeaders{read: true, id: h.Get(jetstream.MsgIDHeader), refused: CheckHeaders(h), discard: h.Get(ScheduledDiscardHeader)}
	}
	return &d.hdr
}
