package jobs

import (
	"testing"

	"github.com/dbusers/dbusers/internal/streams"
	"github.com/dbusers/dbusers/wire"
	"github.com/nats-io/nats.go"
)

func TestCheckHeaders(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		header  nats.Header
		refused bool
	}{
		{"none", nil, false},
		{"msg id", nats.Header{"Nats-Msg-Id": {"job-1"}}, false},
		{"expected stream", nats.Header{"Nats-Expected-Stream": {"DBUSERS_JOBS"}}, false},
		{"an application header", nats.Header{"Traceparent": {"00-abc"}}, false},
		{"sequence", nats.Header{"Nats-Sequence": {"7"}}, true},
		{"stream", nats.Header{"Nats-Stream": {"KV_DBUSERS_VAULT"}}, true},
		{"subject", nats.Header{"Nats-Subject": {"dbusers.jobs.a.user.list"}}, true},
		{"time stamp", nats.Header{"Nats-Time-Stamp": {"2026-01-01T00:00:00Z"}}, true},
		{"lower case", nats.Header{"nats-sequence": {"7"}}, true},
		{"status", nats.Header{"Status": {"100"}}, true},
	}
	for _, tc := range cases {
		err := CheckHeaders(tc.header)
		if (err != nil) != tc.refused {
			t.Errorf("%s: CheckHeaders = %v, want refused %v", tc.name, err, tc.refused)
		}
		if err != nil && err.Code != wire.CodeInvalidJob {
			t.Errorf("%s: code %s, want invalid_job", tc.name, err.Code)
		}
	}
}

func TestServerHeaderIsTheLastValue(t *testing.T) {
	t.Parallel()
	// A direct get appends the server's headers after the stored ones.
	h := nats.Header{"Nats-Sequence": {"7", "10"}}
	if v, ok := streams.ServerHeader(h, "Nats-Sequence"); !ok || v != "10" {
		t.Errorf("ServerHeader = %q, %v; want the server's 10", v, ok)
	}
	if _, ok := streams.ServerHeader(h, "Nats-Stream"); ok {
		t.Error("ServerHeader found an absent header")
	}
}
