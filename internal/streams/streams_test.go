package streams

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dbusers/dbusers/internal/natstest"
	"github.com/dbusers/dbusers/wire"
)

func startJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	_, js := natstest.Connect(t, natstest.Run(t, natstest.Options{}))
	return js
}

var settings = Settings{
	Prefix:          "dbusers",
	Replicas:        1,
	DuplicateWindow: 10 * time.Minute,
	ResultsMaxAge:   24 * time.Hour,
	VaultTTL:        5 * time.Minute,
	Partitions:      4,
	AckWait:         30 * time.Second,
	LeaseTTL:        15 * time.Second,
}

func TestNamesAndSubjects(t *testing.T) {
	tests := []struct {
		prefix                         string
		jobs, results, vault, intents  string
		jobsSubj, resultsSubj, oneSubj string
	}{
		{"dbusers", "DBUSERS_JOBS", "DBUSERS_RESULTS", "DBUSERS_VAULT", "DBUSERS_INTENTS", "dbusers.jobs.>", "dbusers.results.>", "dbusers.results.my-app.job-1"},
		{"my-Plat_2", "MY-PLAT_2_JOBS", "MY-PLAT_2_RESULTS", "MY-PLAT_2_VAULT", "MY-PLAT_2_INTENTS", "my-Plat_2.jobs.>", "my-Plat_2.results.>", "my-Plat_2.results.my-app.job-1"},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			j, r, v, i := wire.Names(tt.prefix)
			if j != tt.jobs || r != tt.results || v != tt.vault || i != tt.intents {
				t.Errorf("Names = %s %s %s %s", j, r, v, i)
			}
			if got := wire.JobsSubject(tt.prefix); got != tt.jobsSubj {
				t.Errorf("JobsSubject = %s", got)
			}
			if got := wire.ResultsSubject(tt.prefix); got != tt.resultsSubj {
				t.Errorf("ResultsSubject = %s", got)
			}
			if got := wire.ResultSubject(tt.prefix, "my-app", "job-1"); got != tt.oneSubj {
				t.Errorf("ResultSubject = %s", got)
			}
		})
	}
}

func TestEnsureIdempotent(t *testing.T) {
	js := startJS(t)
	ctx := t.Context()
	for i := range 2 {
		if _, err := Ensure(ctx, js, settings); err != nil {
			t.Fatalf("Ensure #%d: %v", i+1, err)
		}
	}
	// Changing a setting updates in place.
	changed := settings
	changed.DuplicateWindow = 15 * time.Minute
	changed.VaultTTL = 2 * time.Minute
	o, err := Ensure(ctx, js, changed)
	if err != nil {
		t.Fatalf("Ensure with changed settings: %v", err)
	}

	ji, err := o.Jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ri, err := o.Results.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := o.Vault.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	is, err := o.Intents.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Partitions) != 4 {
		t.Fatalf("%d partition consumers, want 4", len(o.Partitions))
	}
	ci, err := o.Partitions[3].Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mi, err := o.Misc.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := o.Leases.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := o.OldPasswords.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	jc, rc, cc := ji.Config, ri.Config, ci.Config
	checks := []struct {
		name      string
		got, want any
	}{
		{"jobs name", jc.Name, "DBUSERS_JOBS"},
		{"jobs subjects", jc.Subjects[0], "dbusers.jobs.>"},
		{"jobs retention", jc.Retention, jetstream.WorkQueuePolicy},
		{"jobs storage", jc.Storage, jetstream.FileStorage},
		{"jobs replicas", jc.Replicas, 1},
		{"jobs duplicates", jc.Duplicates, 15 * time.Minute},
		{"jobs max msg size", jc.MaxMsgSize, int32(64 * 1024)},
		{"jobs discard", jc.Discard, jetstream.DiscardNew},
		{"jobs transform source", jc.SubjectTransform.Source, "dbusers.jobs.*.>"},
		{"jobs transform destination", jc.SubjectTransform.Destination, "dbusers.jobs.{{partition(4,1)}}.{{wildcard(1)}}.>"},
		{"leases bucket", ls.Bucket(), "DBUSERS_LEASES"},
		{"leases ttl", ls.TTL(), 15 * time.Second},
		{"old passwords bucket", ops.Bucket(), "DBUSERS_OLD_PASSWORDS"},
		{"old passwords ttl", ops.TTL(), time.Duration(0)},
		{"old passwords history", ops.History(), int64(1)},
		{"old passwords storage", ops.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Storage, jetstream.FileStorage},
		{"misc consumer filter", mi.Config.FilterSubject, "dbusers.jobs.*"},
		{"results name", rc.Name, "DBUSERS_RESULTS"},
		{"results subjects", rc.Subjects[0], "dbusers.results.>"},
		{"results retention", rc.Retention, jetstream.LimitsPolicy},
		{"results storage", rc.Storage, jetstream.FileStorage},
		{"results max age", rc.MaxAge, 24 * time.Hour},
		{"results per subject", rc.MaxMsgsPerSubject, int64(1)},
		{"results allow direct", rc.AllowDirect, true},
		{"vault bucket", vs.Bucket(), "DBUSERS_VAULT"},
		{"vault ttl", vs.TTL(), 2 * time.Minute},
		{"vault history", vs.History(), int64(1)},
		{"intents bucket", is.Bucket(), "DBUSERS_INTENTS"},
		{"intents ttl", is.TTL(), 24 * time.Hour},
		{"intents history", is.History(), int64(1)},
		{"consumer name", cc.Durable, "worker-p3"},
		{"consumer ack", cc.AckPolicy, jetstream.AckExplicitPolicy},
		{"consumer deliver", cc.DeliverPolicy, jetstream.DeliverAllPolicy},
		{"consumer filter", cc.FilterSubject, "dbusers.jobs.3.>"},
		{"consumer ack wait", cc.AckWait, 30 * time.Second},
		{"consumer max deliver", cc.MaxDeliver, -1},
		{"consumer max ack pending", cc.MaxAckPending, 16384},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("got %v (%T), want %v (%T)", c.got, c.got, c.want, c.want)
			}
		})
	}
}

func TestEnsureRejectsSettings(t *testing.T) {
	js := startJS(t)
	tests := []struct {
		name   string
		mutate func(s *Settings)
	}{
		{"empty prefix", func(s *Settings) { s.Prefix = "" }},
		{"dotted prefix", func(s *Settings) { s.Prefix = "a.b" }},
		{"zero replicas", func(s *Settings) { s.Replicas = 0 }},
		{"zero dup window", func(s *Settings) { s.DuplicateWindow = 0 }},
		{"zero max age", func(s *Settings) { s.ResultsMaxAge = 0 }},
		{"zero vault ttl", func(s *Settings) { s.VaultTTL = 0 }},
		{"zero partitions", func(s *Settings) { s.Partitions = 0 }},
		{"zero ack wait", func(s *Settings) { s.AckWait = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := settings
			tt.mutate(&s)
			if _, err := Ensure(t.Context(), js, s); err == nil {
				t.Fatal("Ensure: want an error")
			}
		})
	}
}

func TestJobsStreamLimits(t *testing.T) {
	js := startJS(t)
	ctx := t.Context()
	o, err := Ensure(ctx, js, settings)
	if err != nil {
		t.Fatal(err)
	}
	subj := "dbusers.jobs.my-app.user.create"
	tests := []struct {
		name          string
		msgID         string
		size          int
		wantErr       bool
		wantDuplicate bool
	}{
		{name: "first", msgID: "job-1", size: 100},
		{name: "same id again", msgID: "job-1", size: 100, wantDuplicate: true},
		{name: "other id", msgID: "job-2", size: 100},
		{name: "just under 64 KiB", msgID: "job-3", size: 60 * 1024},
		{name: "70 KiB refused", msgID: "job-4", size: 70 * 1024, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ack, err := js.Publish(ctx, subj, bytes.Repeat([]byte("x"), tt.size), jetstream.WithMsgID(tt.msgID))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Publish: want an error, got ack seq %d", ack.Sequence)
				}
				return
			}
			if err != nil {
				t.Fatalf("Publish: %v", err)
			}
			if ack.Duplicate != tt.wantDuplicate {
				t.Errorf("Duplicate = %v, want %v", ack.Duplicate, tt.wantDuplicate)
			}
		})
	}
	info, err := o.Jobs.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Errorf("jobs stream holds %d messages, want 3", info.State.Msgs)
	}
}

func TestPartitioning(t *testing.T) {
	js := startJS(t)
	ctx := t.Context()
	o, err := Ensure(ctx, js, settings)
	if err != nil {
		t.Fatal(err)
	}
	// A target's jobs always land in the same partition; the stored subject
	// maps back to the published one.
	seen := map[string]string{}
	for i, subj := range []string{"dbusers.jobs.app.user.create", "dbusers.jobs.app.user.delete",
		"dbusers.jobs.shop.user.list", "dbusers.jobs.app.x", "dbusers.jobs.lonely"} {
		ack, err := js.Publish(ctx, subj, []byte("{}"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := o.Jobs.GetMsg(ctx, ack.Sequence)
		if err != nil {
			t.Fatal(err)
		}
		if got := OriginalSubject("dbusers", m.Subject); got != subj {
			t.Errorf("#%d: stored %s maps back to %s, want %s", i, m.Subject, got, subj)
		}
		target := strings.Split(subj, ".")[2]
		part := strings.Split(m.Subject, ".")[2]
		if subj == "dbusers.jobs.lonely" {
			if m.Subject != subj {
				t.Errorf("a one-token job subject was rewritten to %s", m.Subject)
			}
			continue
		}
		if want := fmt.Sprint(wire.Partition(target, settings.Partitions)); part != want {
			t.Errorf("target %s stored in partition %s, Partition says %s", target, part, want)
		}
		if prev, ok := seen[target]; ok && prev != part {
			t.Errorf("target %s in partitions %s and %s", target, prev, part)
		}
		seen[target] = part
	}
	// A smaller partition count with jobs left in a dropped partition is
	// refused; the legacy single consumer is removed.
	fewer := settings
	fewer.Partitions = 1
	if seen["app"] != "0" || seen["shop"] != "0" {
		if _, err := Ensure(ctx, js, fewer); err == nil || !strings.Contains(err.Error(), "still holds") {
			t.Errorf("shrinking partitions with pending jobs: %v", err)
		}
	}
}

// TestTakeOverPartitionFreshFrom: a taken-over partition's consumer
// delivers its jobs again from the oldest, as first deliveries, even one
// the old consumer delivered; freshFrom is past every job stored before
// the take-over and at the first one stored after it.
func TestTakeOverPartitionFreshFrom(t *testing.T) {
	js := startJS(t)
	ctx := t.Context()
	o, err := Ensure(ctx, js, settings)
	if err != nil {
		t.Fatal(err)
	}
	n := wire.Partition("app", settings.Partitions)
	var seqs []uint64
	for range 2 {
		ack, err := js.Publish(ctx, "dbusers.jobs.app.user.delete", []byte("{}"))
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ack.Sequence)
	}
	// The old consumer delivers the first job, which stays unacked.
	if _, err := o.Partitions[n].Next(jetstream.FetchMaxWait(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	c, freshFrom, err := TakeOverPartition(ctx, js, settings, n)
	if err != nil {
		t.Fatal(err)
	}
	if freshFrom != seqs[1]+1 {
		t.Fatalf("freshFrom %d, want %d: past the jobs stored before", freshFrom, seqs[1]+1)
	}
	ack, err := js.Publish(ctx, "dbusers.jobs.app.user.delete", []byte("{}"))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Sequence < freshFrom {
		t.Fatalf("a job stored after the take-over has sequence %d, under freshFrom %d", ack.Sequence, freshFrom)
	}
	m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	meta, err := m.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if meta.Sequence.Stream != seqs[0] || meta.NumDelivered != 1 {
		t.Fatalf("the new consumer's first delivery is %d (delivery %d), want %d as a first delivery: why freshFrom is needed",
			meta.Sequence.Stream, meta.NumDelivered, seqs[0])
	}
}
