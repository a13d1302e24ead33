package jobs

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/dbusers/dbusers/wire"
)

// TestDeliveryKeepsWhatItsHeadersSay: a delivered job's headers are read
// once, when it is delivered, and let go (a queued job holds no header
// map); what they said still decides its id and its refusal.
func TestDeliveryKeepsWhatItsHeadersSay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		header   nats.Header
		wantID   string
		refused  bool
		schedule string
	}{
		{"msg id", nats.Header{"Nats-Msg-Id": {"job-7"}}, "job-7", false, ""},
		{"no header", nil, "", false, ""},
		{"a server header", nats.Header{"Nats-Msg-Id": {"job-8"}, "Nats-Sequence": {"12"}}, "job-8", true, ""},
		{"scheduled discard", nats.Header{ScheduledDiscardHeader: {"2026-12-07T10:00:00Z"}}, "", false, "2026-12-07T10:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := &nats.Msg{Subject: "dbusers.jobs.app.user.delete", Header: tt.header, Data: []byte(`{"id":"body-id","username":"good_user"}`)}
			d := newDelivery(pulledMsg{m: m}, time.Now())
			if m.Header != nil {
				t.Fatal("the delivered message still holds its parsed headers")
			}
			h := d.headers()
			if h.id != tt.wantID || (h.refused != nil) != tt.refused || h.discard != tt.schedule {
				t.Fatalf("headers read as id %q, refused %v, discard %q; want %q, %v, %q", h.id, h.refused, h.discard, tt.wantID, tt.refused, tt.schedule)
			}
			if tt.refused && h.refused.Code != wire.CodeInvalidJob {
				t.Fatalf("refused with %s, want invalid_job", h.refused.Code)
			}
			wantResult := tt.wantID
			if wantResult == "" {
				wantResult = "body-id"
			}
			if got := ResultID(h.id, d.msg.Data(), d.seq); got != wantResult {
				t.Fatalf("result id %q, want %q", got, wantResult)
			}
		})
	}
}
