// Package streams owns the JetStream objects of contract §1: their names,
// subjects and settings, and their idempotent creation or update at worker
// start-up.
package streams

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ConsumerName is the durable name of the worker's pull consumer on the jobs
// stream; every worker process shares it.
const ConsumerName = "worker"

// Fixed settings of contract §1.
const (
	// MaxJobSize bounds one job message (headers included): a job is a small
	// JSON object, and the bound keeps a stray publish from filling the stream.
	MaxJobSize = 64 * 1024
	// AckWait is how long a delivered job may go unacknowledged before it is
	// redelivered; long jobs extend it with InProgress.
	AckWait = 30 * time.Second
	// MaxAckPending bounds the jobs in flight across all worker processes.
	MaxAckPending = 4096
)

// Settings are the configurable parts of the JetStream objects.
type Settings struct {
	Prefix          string // subject prefix P, e.g. "dbusers"
	Replicas        int
	DuplicateWindow time.Duration
	ResultsMaxAge   time.Duration
	VaultTTL        time.Duration
}

// Objects are handles on the JetStream objects Ensure created or updated.
type Objects struct {
	Jobs     jetstream.Stream
	Results  jetstream.Stream
	Vault    jetstream.KeyValue
	Intents  jetstream.KeyValue
	Consumer jetstream.Consumer
}

// Names returns the jobs and results stream names and the vault and intents
// bucket names: the upper-cased prefix plus "_JOBS", "_RESULTS", "_VAULT",
// "_INTENTS", as contract §1 says. A valid prefix (^[A-Za-z0-9_-]+$) needs no
// other mapping: JetStream stream names refuse only whitespace, '.', '*',
// '>', '/' and '\', and bucket names allow [A-Za-z0-9_-], so a '-' is kept.
func Names(prefix string) (jobs, results, vault, intents string) {
	p := strings.ToUpper(prefix)
	return p + "_JOBS", p + "_RESULTS", p + "_VAULT", p + "_INTENTS"
}

// JobsSubject returns the subject filter of all jobs: "P.jobs.>".
func JobsSubject(prefix string) string { return prefix + ".jobs.>" }

// ResultsSubject returns the subject filter of all results: "P.results.>".
func ResultsSubject(prefix string) string { return prefix + ".results.>" }

// ResultSubject returns the subject of one job's result:
// "P.results.<target>.<id>". The caller passes valid tokens.
func ResultSubject(prefix, target, id string) string {
	return prefix + ".results." + target + "." + id
}

var prefixRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (s Settings) validate() error {
	var errs []error
	if !prefixRe.MatchString(s.Prefix) {
		errs = append(errs, fmt.Errorf("prefix %q must match %s", s.Prefix, prefixRe))
	}
	if s.Replicas < 1 || s.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d must be 1 to 5", s.Replicas))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"duplicate window", s.DuplicateWindow}, {"results max age", s.ResultsMaxAge}, {"vault TTL", s.VaultTTL}} {
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
	jobsName, resultsName, vaultName, intentsName := Names(s.Prefix)
	var (
		o   Objects
		err error
	)
	o.Jobs, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       jobsName,
		Subjects:   []string{JobsSubject(s.Prefix)},
		Retention:  jetstream.WorkQueuePolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   s.Replicas,
		Duplicates: s.DuplicateWindow,
		MaxMsgSize: MaxJobSize,
		// A publisher must get an error rather than an accepted job being
		// dropped to make room.
		Discard: jetstream.DiscardNew,
	})
	if err != nil {
		return nil, fmt.Errorf("streams: jobs stream %s: %w", jobsName, err)
	}
	o.Results, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:      resultsName,
		Subjects:  []string{ResultsSubject(s.Prefix)},
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
	o.Vault, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   vaultName,
		TTL:      s.VaultTTL,
		History:  1,
		Storage:  jetstream.FileStorage,
		Replicas: s.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("streams: vault bucket %s: %w", vaultName, err)
	}
	// Intents record which job is creating or deleting a username, for crash
	// recovery; they are worth keeping as long as the job's result is.
	o.Intents, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:   intentsName,
		TTL:      s.ResultsMaxAge,
		History:  1,
		Storage:  jetstream.FileStorage,
		Replicas: s.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("streams: intents bucket %s: %w", intentsName, err)
	}
	o.Consumer, err = js.CreateOrUpdateConsumer(ctx, jobsName, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: JobsSubject(s.Prefix),
		AckWait:       AckWait,
		// Never give up on a job: every accepted job must get its result.
		MaxDeliver:    -1,
		MaxAckPending: MaxAckPending,
	})
	if err != nil {
		return nil, fmt.Errorf("streams: consumer %s on %s: %w", ConsumerName, jobsName, err)
	}
	return &o, nil
}
