// Package streams owns the JetStream objects of contract §1: their names,
// subjects and settings, and their idempotent creation or update at worker
// start-up.
package streams

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dbusers/dbusers/wire"
	"github.com/nats-io/nats.go/jetstream"
)

// Consumer names on the jobs stream. Each partition has its own durable
// consumer (wire.PartitionConsumer), worked by one process at a time (see
// internal/partitions); jobs whose subject has too few tokens to be
// partitioned go to the misc consumer, which every process shares (they
// are all invalid_job).
const (
	MiscConsumerName = "worker-misc"
	// legacyConsumerName is the single consumer of versions before
	// partitioning; its filter overlaps the partitions', so it is removed.
	legacyConsumerName = "worker"
)

// Fixed settings of contract §1.
const (
	// MaxJobSize bounds one job message (headers included): a job is a small
	// JSON object, and the bound keeps a stray publish from filling the stream.
	MaxJobSize = 64 * 1024
	// MaxAckPending bounds the jobs in flight on one partition. A consumer
	// delivers in stream order, so a target with more jobs than this stuck
	// behind a down MySQL stalls its partition. A queued reset costs a
	// worker about 1.5 KiB with the garbage collector's headroom: a full
	// window about 24 MiB (the 100,000-job backlog of docs/benchmarks.md
	// peaks at about 50 MiB of RSS).
	MaxAckPending = 16384
)

// Settings are the configurable parts of the JetStream objects.
type Settings struct {
	Prefix          string // subject prefix P, e.g. "dbusers"
	Replicas        int
	DuplicateWindow time.Duration
	ResultsMaxAge   time.Duration
	VaultTTL        time.Duration
	Partitions      int
	AckWait         time.Duration
	LeaseTTL        time.Duration
	// JobsMaxBytes bounds the jobs stream (DiscardNew: new jobs are
	// refused at the bound, accepted ones never dropped); none when 0.
	JobsMaxBytes int64
}

// Objects are handles on the JetStream objects Ensure created or updated.
type Objects struct {
	Jobs    jetstream.Stream
	Results jetstream.Stream
	Vault   jetstream.KeyValue
	Intents jetstream.KeyValue
	Leases  jetstream.KeyValue
	// OldPasswords holds when each retained old password ends
	// (internal/oldpasswords).
	OldPasswords jetstream.KeyValue
	Partitions   []jetstream.Consumer // index = partition number
	Misc         jetstream.Consumer
}

// LeasesName returns the name of the bucket of partition leases and worker
// heartbeats: the upper-cased prefix plus "_LEASES".
func LeasesName(prefix string) string { return strings.ToUpper(prefix) + "_LEASES" }

// OldPasswordsName returns the name of the bucket of old-password end
// times (contract §9): the upper-cased prefix plus "_OLD_PASSWORDS".
func OldPasswordsName(prefix string) string { return strings.ToUpper(prefix) + "_OLD_PASSWORDS" }

// PartitionSubject returns the stored-subject filter of one partition:
// "P.jobs.<n>.>". The stream rewrites "P.jobs.<target>.<rest>" to
// "P.jobs.<partition of target>.<target>.<rest>" as it stores a job.
func PartitionSubject(prefix string, n int) string {
	return fmt.Sprintf("%s.jobs.%d.>", prefix, n)
}

// OriginalSubject undoes the stream's partition rewrite: it returns the
// subject the job was published on. A stored subject with one token after
// "P.jobs." was not rewritten (the transform needs two); every longer one
// carries the partition as its first token there.
func OriginalSubject(prefix, stored string) string {
	if hasWildcardToken(stored) {
		return stored // the stream rewrites literal subjects only
	}
	head := prefix + ".jobs."
	rest, ok := strings.CutPrefix(stored, head)
	if !ok {
		return stored
	}
	_, after, found := strings.Cut(rest, ".")
	if !found {
		return stored
	}
	return head + after
}

// ReadByConsumer reports whether a stored job subject is read by one of the
// jobs stream's consumers: a partition's ("P.jobs.<n>.>", n below
// partitions) or the misc consumer's ("P.jobs.*"). A job published on a
// subject with a wildcard token is stored as published, without the
// partition rewrite, and usually outside both.
func ReadByConsumer(prefix, stored string, partitions int) bool {
	rest, ok := strings.CutPrefix(stored, prefix+".jobs.")
	if !ok {
		return false
	}
	first, after, more := strings.Cut(rest, ".")
	if !more {
		return first != ">" && first != ""
	}
	n, err := strconv.Atoi(first)
	return err == nil && n >= 0 && n < partitions && strconv.Itoa(n) == first && after != ""
}

// hasWildcardToken reports whether a subject has a "*" or ">" token.
func hasWildcardToken(subject string) bool {
	for tok := range strings.SplitSeq(subject, ".") {
		if tok == "*" || tok == ">" {
			return true
		}
	}
	return false
}

var prefixRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (s Settings) validate() error {
	var errs []error
	if !prefixRe.MatchString(s.Prefix) {
		errs = append(errs, fmt.Errorf("prefix %q must match %s", s.Prefix, prefixRe))
	}
	if s.Partitions < 1 || s.Partitions > 256 {
		errs = append(errs, fmt.Errorf("partitions %d must be 1 to 256", s.Partitions))
	}
	if s.Replicas < 1 || s.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d must be 1 to 5", s.Replicas))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"duplicate window", s.DuplicateWindow}, {"results max age", s.ResultsMaxAge}, {"vault TTL", s.VaultTTL},
		{"ack wait", s.AckWait}, {"lease TTL", s.LeaseTTL}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %s", d.name, d.v))
		}
	}
	return errors.Join(errs...)
}

// Ensure creates the JetStream objects of contract §1, or updates them to
// these settings when they exist, so it is safe on every start-up. A setting
// JetStream cannot change in place (such as retention) makes it fail.
func Ensure(ctx context.Context, js jetstream.JetStream, s Settings) (*Objects, error) {
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("streams: %w", err)
	}
	jobsName, resultsName, vaultName, intentsName := wire.Names(s.Prefix)
	var (
		o   Objects
		err error
	)
	o.Jobs, err = ensureStream(ctx, js, jetstream.StreamConfig{
		Name:       jobsName,
		Subjects:   []string{wire.JobsSubject(s.Prefix)},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   s.Replicas,
		Duplicates: s.DuplicateWindow,
		MaxMsgSize: MaxJobSize,
		MaxBytes:   maxBytes(s.JobsMaxBytes),
		// A publisher must get an error rather than an accepted job being
		// dropped to make room.
		Discard: jetstream.DiscardNew,
		// All jobs of a target land in one partition (FNV-1a of the target
		// token), so one process at a time works them, in order.
		SubjectTransform: &jetstream.SubjectTransformConfig{
			Source:      s.Prefix + ".jobs.*.>",
			Destination: fmt.Sprintf("%s.jobs.{{partition(%d,1)}}.{{wildcard(1)}}.>", s.Prefix, s.Partitions),
		},
		// Stray jobs (no consumer reads their subject) are read by
		// sequence and subject (jobs.StraySweeper).
		AllowDirect: true,
	})
	if err != nil {
		return nil, fmt.Errorf("streams: jobs stream %s: %w", jobsName, err)
	}
	o.Results, err = ensureStream(ctx, js, jetstream.StreamConfig{
		Name:      resultsName,
		Subjects:  []string{wire.ResultsSubject(s.Prefix)},
		Retention: jetstream.LimitsPolicy,
		Storage:   jetstream.FileStorage,
		Replicas:  s.Replicas,
		MaxAge:    s.ResultsMaxAge,
		// One result per job subject; direct gets let requesters and the
		// worker read a stored result by subject cheaply.
		MaxMsgsPerSubject: 1,
		AllowDirect:       true,
	})
	if err != nil {
		return nil, fmt.Errorf("streams: results stream %s: %w", resultsName, err)
	}
	bucket := func(what, name string, ttl time.Duration) (jetstream.KeyValue, error) {
		kv, err := ensureBucket(ctx, js, jetstream.KeyValueConfig{
			Bucket:   name,
			TTL:      ttl,
			History:  1,
			Storage:  jetstream.FileStorage, // memory would vanish with a server restart
			Replicas: s.Replicas,
		})
		if err != nil {
			return nil, fmt.Errorf("streams: %s bucket %s: %w", what, name, err)
		}
		return kv, nil
	}
	if o.Vault, err = bucket("vault", vaultName, s.VaultTTL); err != nil {
		return nil, err
	}
	// Intents record which job is creating or deleting a username, for crash
	// recovery; they are worth keeping as long as the job's result is.
	if o.Intents, err = bucket("intents", intentsName, s.ResultsMaxAge); err != nil {
		return nil, err
	}
	if o.Leases, err = bucket("leases", LeasesName(s.Prefix), s.LeaseTTL); err != nil {
		return nil, err
	}
	// An old password's end time must outlive every process, however long
	// none runs: no TTL.
	if o.OldPasswords, err = bucket("old passwords", OldPasswordsName(s.Prefix), 0); err != nil {
		return nil, err
	}
	if err := removeStale(ctx, js, o.Jobs, s.Partitions); err != nil {
		return nil, err
	}
	consumer := func(name, filter string) (jetstream.Consumer, error) {
		c, err := js.CreateOrUpdateConsumer(ctx, jobsName, consumerConfig(name, filter, s))
		if err != nil {
			return nil, fmt.Errorf("streams: consumer %s on %s: %w", name, jobsName, err)
		}
		return c, nil
	}
	for n := range s.Partitions {
		c, err := consumer(wire.PartitionConsumer(n), PartitionSubject(s.Prefix, n))
		if err != nil {
			return nil, err
		}
		o.Partitions = append(o.Partitions, c)
	}
	if o.Misc, err = consumer(MiscConsumerName, s.Prefix+".jobs.*"); err != nil {
		return nil, err
	}
	return &o, nil
}

// consumerConfig is the configuration of a jobs consumer.
func consumerConfig(name, filter string, s Settings) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       name,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: filter,
		AckWait:       s.AckWait,
		// Never give up on a job: every accepted job must get its result.
		MaxDeliver:    -1,
		MaxAckPending: MaxAckPending,
	}
}

// TakeOverPartition re-creates partition n's consumer for a process that
// has just taken the partition's lease, and returns it. The jobs stream
// keeps only unacknowledged jobs (work-queue retention), so the new
// consumer delivers every job still in the partition from the oldest, in
// stream order: those another process held when it died or lost the
// lease come before any later job of their target. Without it the old
// consumer would redeliver them only after their ack wait, behind newer
// jobs. The caller holds the lease: no other process reads the consumer.
//
// freshFrom is the stream's next sequence once the new consumer exists:
// the old consumer, deleted before, delivered none from it on, so a first
// delivery of such a job is the first any process had
// (jobs.Config.FreshFrom).
func TakeOverPartition(ctx context.Context, js jetstream.JetStream, s Settings, n int) (c jetstream.Consumer, freshFrom uint64, err error) {
	jobsName, _, _, _ := wire.Names(s.Prefix)
	name := wire.PartitionConsumer(n)
	if err := js.DeleteConsumer(ctx, jobsName, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, 0, fmt.Errorf("streams: take over partition %d: delete its consumer: %w", n, err)
	}
	c, err = js.CreateOrUpdateConsumer(ctx, jobsName, consumerConfig(name, PartitionSubject(s.Prefix, n), s))
	if err != nil {
		return nil, 0, fmt.Errorf("streams: take over partition %d: create its consumer: %w", n, err)
	}
	stream, err := js.Stream(ctx, jobsName)
	if err != nil {
		return nil, 0, fmt.Errorf("streams: take over partition %d: read the jobs stream's last sequence: %w", n, err)
	}
	return c, stream.CachedInfo().State.LastSeq + 1, nil
}

// removeStale deletes consumers that would overlap the partition consumers
// or that belong to partitions beyond the configured count. A stale
// partition consumer that still holds jobs is an error: deleting it would
// strand them.
func removeStale(ctx context.Context, js jetstream.JetStream, jobs jetstream.Stream, partitions int) error {
	stream := jobs.CachedInfo().Config.Name
	lister := jobs.ListConsumers(ctx)
	var stale []string
	for info := range lister.Info() {
		name := info.Name
		if name == legacyConsumerName {
			stale = append(stale, name)
			continue
		}
		num, ok := strings.CutPrefix(name, wire.PartitionConsumerPrefix)
		if !ok {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(num, "%d", &n); err != nil || n < partitions {
			continue
		}
		if info.NumPending > 0 || info.NumAckPending > 0 {
			return fmt.Errorf("streams: partition consumer %s still holds %d jobs but nats.partitions is %d: "+
				"run with the old partition count until the jobs stream is empty", name, info.NumPending+uint64(info.NumAckPending), partitions)
		}
		stale = append(stale, name)
	}
	if err := lister.Err(); err != nil {
		return fmt.Errorf("streams: list consumers of %s: %w", stream, err)
	}
	for _, name := range stale {
		if err := js.DeleteConsumer(ctx, stream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("streams: delete stale consumer %s: %w", name, err)
		}
	}
	return nil
}

// maxBytes is a stream's MaxBytes for a bound, where 0 means none.
func maxBytes(bound int64) int64 {
	if bound <= 0 {
		return -1
	}
	return bound
}

// PutAll writes values under keys of the key-value bucket in one round:
// every write is published at once and the stream's acks are awaited
// together, where a Put per key would wait for each. errs[i] is key i's.
func PutAll(ctx context.Context, js jetstream.JetStream, bucket string, keys []string, values [][]byte) []error {
	errs := make([]error, len(keys))
	futures := make([]jetstream.PubAckFuture, len(keys))
	for i, k := range keys {
		futures[i], errs[i] = js.PublishAsync("$KV."+bucket+"."+k, values[i])
	}
	AwaitAcks(ctx, futures, errs)
	return errs
}

// AwaitAcks waits for the stream's acks of a round of PublishAsync, all
// together: errs[i] becomes futures[i]'s error, or the context's when it
// ends first. A nil future, whose publish failed (errs[i] says why), is
// passed over.
func AwaitAcks(ctx context.Context, futures []jetstream.PubAckFuture, errs []error) {
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs[i] = err
		case <-ctx.Done():
			errs[i] = ctx.Err()
		}
	}
}

// ensureStream creates cfg's stream, or updates it where it differs from
// cfg in a field set here. An update that would change nothing is not
// sent: processes start together, and nats-server 2.15.2 updates a
// stream's file store config unguarded against a consumer being created
// on it (the race detector caught it when two workers started at once).
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	if st, err := js.Stream(ctx, cfg.Name); err == nil && sameStream(st.CachedInfo().Config, cfg) {
		return st, nil
	}
	return js.CreateOrUpdateStream(ctx, cfg)
}

// sameStream reports whether have already holds every field want sets.
func sameStream(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.Retention == want.Retention && have.Storage == want.Storage &&
		have.Replicas == max(want.Replicas, 1) && have.Duplicates == want.Duplicates && have.MaxMsgSize == want.MaxMsgSize &&
		have.MaxBytes == want.MaxBytes && have.Discard == want.Discard && have.MaxAge == want.MaxAge &&
		have.MaxMsgsPerSubject == want.MaxMsgsPerSubject && have.AllowDirect == want.AllowDirect &&
		reflect.DeepEqual(have.SubjectTransform, want.SubjectTransform)
}

// ensureBucket is ensureStream for a key-value bucket: it is updated only
// where its TTL, history, storage or replicas differ from cfg's.
func ensureBucket(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if kv, err := js.KeyValue(ctx, cfg.Bucket); err == nil {
		if st, err := kv.Status(ctx); err == nil {
			if info := st.(*jetstream.KeyValueBucketStatus).StreamInfo(); info != nil {
				c := info.Config
				if c.MaxAge == cfg.TTL && c.MaxMsgsPerSubject == int64(cfg.History) && c.Storage == cfg.Storage && c.Replicas == max(cfg.Replicas, 1) {
					return kv, nil
				}
			}
		}
	}
	return js.CreateOrUpdateKeyValue(ctx, cfg)
}
