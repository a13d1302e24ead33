package streams

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/dbusers/dbusers/internal/natstest"
)

// TestLastBySubject: each subject's last message is found, by the
// subject the server stored it under, whether one subject is asked for
// (a plain direct get) or many (batched); subjects without a message are
// left out, and a stream without direct gets is an error.
func TestLastBySubject(t *testing.T) {
	t.Parallel()
	nc, js := natstest.Connect(t, natstest.Run(t, natstest.Options{}))
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R", Subjects: []string{"r.>"}, AllowDirect: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "NODIRECT", Subjects: []string{"n.>"}}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct{ subject, data string }{{"r.a", "a1"}, {"r.a", "a2"}, {"r.b", "b1"}} {
		msg := nats.NewMsg(m.subject)
		msg.Data = []byte(m.data)
		// A publisher's own Nats-Subject must not be taken for the
		// server's.
		msg.Header.Set(jetstream.SubjectHeader, "r.c")
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name     string
		stream   string
		subjects []string
		want     map[string]string
		wantErr  bool
	}{
		{name: "one present", stream: "R", subjects: []string{"r.a"}, want: map[string]string{"r.a": "a2"}},
		{name: "one absent", stream: "R", subjects: []string{"r.c"}, want: map[string]string{}},
		{name: "many", stream: "R", subjects: []string{"r.a", "r.b", "r.c"}, want: map[string]string{"r.a": "a2", "r.b": "b1"}},
		{name: "many absent", stream: "R", subjects: []string{"r.x", "r.y"}, want: map[string]string{}},
		{name: "one, no direct gets", stream: "NODIRECT", subjects: []string{"n.a"}, wantErr: true},
		{name: "many, no direct gets", stream: "NODIRECT", subjects: []string{"n.a", "n.b"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LastBySubject(ctx, nc, tt.stream, tt.subjects)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d messages, want %v", len(got), tt.want)
			}
			for s, data := range tt.want {
				if m := got[s]; m == nil || string(m.Data) != data {
					t.Fatalf("%s: got %v, want %q", s, m, data)
				}
			}
		})
	}
}
