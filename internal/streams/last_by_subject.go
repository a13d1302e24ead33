package streams

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxPerDirectGet is how many subjects one batched direct get asks for:
// the server caps a request at 1024.
const maxPerDirectGet = 1000

// LastBySubject returns the last message of each of subjects in stream,
// by subject, in batched direct gets ("multi_last", nats-server 2.11 and
// later; the stream allows direct gets): one round trip per thousand
// subjects. Subjects without a message are left out. Each message's
// Nats-Subject is the server's (ServerHeader), whatever a publisher stored.
func LastBySubject(ctx context.Context, nc *nats.Conn, stream string, subjects []string) (map[string]*nats.Msg, error) {
	out := make(map[string]*nats.Msg, len(subjects))
	if len(subjects) == 1 {
		// One subject (a lone job's lookup): a plain direct get through
		// the connection's shared reply subscription, without a
		// subscription of its own to make and remove on the server.
		return out, lastOfOne(ctx, nc, stream, subjects[0], out)
	}
	for start := 0; start < len(subjects); start += maxPerDirectGet {
		if err := lastBySubject(ctx, nc, stream, subjects[start:min(start+maxPerDirectGet, len(subjects))], out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func lastBySubject(ctx context.Context, nc *nats.Conn, stream string, subjects []string, out map[string]*nats.Msg) error {
	req, err := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
		Batch     int      `json:"batch"`
	}{subjects, len(subjects)})
	if err != nil {
		return err
	}
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, req); err != nil {
		return err
	}
	want := make(map[string]struct{}, len(subjects))
	for _, s := range subjects {
		want[s] = struct{}{}
	}
	for {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return fmt.Errorf("batched direct get of %d subjects of %s: %w", len(subjects), stream, err)
		}
		subject, found := ServerHeader(msg.Header, jetstream.SubjectHeader)
		if !found {
			// 204 EOB: the end; 404: none of them has a message.
			switch status, _ := ServerHeader(msg.Header, "Status"); status {
			case "204", "404":
				return nil
			default:
				desc, _ := ServerHeader(msg.Header, "Description")
				return fmt.Errorf("batched direct get of %d subjects of %s: the server answered %s %q", len(subjects), stream, status, desc)
			}
		}
		if _, ok := want[subject]; ok {
			out[subject] = msg
		}
	}
}

func lastOfOne(ctx context.Context, nc *nats.Conn, stream, subject string, out map[string]*nats.Msg) error {
	msg, err := nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+stream+"."+subject, nil)
	if err != nil {
		return fmt.Errorf("direct get of %s in %s: %w", subject, stream, err)
	}
	got, found := ServerHeader(msg.Header, jetstream.SubjectHeader)
	if !found {
		switch status, _ := ServerHeader(msg.Header, "Status"); status {
		case "404":
			return nil
		default:
			desc, _ := ServerHeader(msg.Header, "Description")
			return fmt.Errorf("direct get of %s in %s: the server answered %s %q", subject, stream, status, desc)
		}
	}
	if got == subject {
		out[subject] = msg
	}
	return nil
}

// ServerHeader returns the value the NATS server wrote for a metadata header
// of a message it handed out: the last one, since the server appends its own
// after any the publisher stored. ok is false when the header is absent.
func ServerHeader(h nats.Header, name string) (value string, ok bool) {
	vs := h[name]
	if len(vs) == 0 {
		return "", false
	}
	return vs[len(vs)-1], true
}

// KVRemoved reports whether a key-value bucket's message is a delete or
// purge marker (or a marker the server left for a removed key): the key
// reads as absent.
func KVRemoved(h nats.Header) bool {
	return h.Get("KV-Operation") != "" || h.Get(jetstream.MarkerReasonHeader) != ""
}
