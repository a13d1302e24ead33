package jobs

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/dbusers/dbusers/internal/mysqlops"
	"github.com/dbusers/dbusers/internal/streams"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// Ops is what the worker needs from one target's MySQL side.
type Ops interface {
	// Create and ResetPassword wait for ready right before they set the
	// password, so the worker can store the sealed password meanwhile.
	Create(ctx context.Context, username string, password secret.Secret, readOnly bool, intent mysqlops.Intent, ready mysqlops.Ready) error
	ResetPassword(ctx context.Context, username string, password secret.Secret, ready mysqlops.Ready) (mysqlops.Account, error)
	Delete(ctx context.Context, username string, intent mysqlops.Intent) (mysqlops.Account, error)
	List(ctx context.Context, after string, limit int) ([]mysqlops.Account, string, error)
	// Abandon drops a possibly half-made account of a create that gives up.
	Abandon(ctx context.Context, username string, intent mysqlops.Intent) error
}

// BatchOps is what the worker needs to run many accounts' jobs of one
// target in one statement. Each returned slice has one entry per change;
// an error that is not an outcome (isOutcome) sends that job to the
// one-account operations of Ops.
type BatchOps interface {
	ResetPasswords(ctx context.Context, changes []mysqlops.Change) ([]mysqlops.Account, []error)
	CreateMany(ctx context.Context, changes []mysqlops.Change, record mysqlops.Record) []error
	DeleteMany(ctx context.Context, changes []mysqlops.Change, record mysqlops.Record) ([]mysqlops.Account, []error)
}

var (
	_ Ops      = (*mysqlops.Target)(nil)
	_ BatchOps = (*mysqlops.Target)(nil)
)

// Sealer opens chosen passwords and seals generated ones (the worker's
// curve key).
type Sealer interface {
	OpenPassword(sealed secret.Secret, senderPub, jobID string) (secret.Secret, error)
	SealPassword(jobID string, password secret.Secret, recipientPub string) ([]byte, error)
	// PublicKey is the worker's own key, which seals what only the
	// worker reads back (a kept credential).
	PublicKey() string
}

// SecretStore keeps sealed generated passwords for their requester.
type SecretStore interface {
	Put(ctx context.Context, target, jobID string, sealed []byte) (key string, expiresAt time.Time, err error)
	// Purge removes the entry of a job that ended without using its
	// password, so that it reads as gone, as one the requester purged.
	Purge(ctx context.Context, target, jobID string) error
	Bucket() string
}

// BatchSecrets writes many sealed passwords of one target with one wait
// (vault.Store); a SecretStore without it is written one Put per job,
// concurrently.
type BatchSecrets interface {
	PutMany(ctx context.Context, target string, jobIDs []string, sealed [][]byte) (keys []string, expiresAt time.Time, errs []error)
}

// NewSecrets writes an entry only where its key holds nothing yet
// (vault.Store): a lone job writes its entry beside its stored-result
// lookup instead of after it. A SecretStore without it writes after the
// lookup.
type NewSecrets interface {
	PutNew(ctx context.Context, target, jobID string, sealed []byte) (key string, expiresAt time.Time, created bool, err error)
}

// ResultStore publishes results and finds one already published.
type ResultStore interface {
	Publish(ctx context.Context, subject string, data []byte) error
	// PublishNew publishes data on subject unless a result is stored
	// there already, which it reports with exists=true.
	PublishNew(ctx context.Context, subject string, data []byte) (exists bool, err error)
	// Lookup returns the stored result on subject, or ok=false.
	Lookup(ctx context.Context, subject string) (data []byte, ok bool, err error)
}

// BatchResults publishes and looks up the results of many jobs with one
// wait (StreamResults); a ResultStore without it is called once per job.
type BatchResults interface {
	// PublishMany publishes each data on its subject, where onlyNew
	// says so only when no result is stored there yet (reported in
	// exists); it waits once for all the stream's acks.
	PublishMany(ctx context.Context, pubs []Publication) (exists []bool, errs []error)
	// LookupMany returns the stored results on subjects, by subject, in
	// one batched direct get.
	LookupMany(ctx context.Context, subjects []string) (map[string][]byte, error)
}

// Publication is one result of PublishMany.
type Publication struct {
	Subject string
	Data    []byte
	OnlyNew bool
}

// JobsStream is what the worker erases in the jobs stream besides
// consuming it.
type JobsStream interface {
	// Erase deletes a job and overwrites its bytes on disk: a sealed
	// password must not stay in the store's files after its job ends.
	Erase(ctx context.Context, seq uint64) error
}

// Intents records which job last started to create or drop a username, so
// that a retried job recognizes its own half-done work.
type Intents interface {
	Get(ctx context.Context, key string) (jobID string, err error) // "" when absent
	Put(ctx context.Context, key, jobID string) error
}

// BatchIntents writes many records with one wait (KVIntents); Intents
// without it are written one Put per key, concurrently.
type BatchIntents interface {
	PutMany(ctx context.Context, keys, values []string) []error
}

// Observer is told what the worker does, for metrics. Its methods must not
// block.
type Observer interface {
	// JobDone is called once per job answered: outcome is "ok", "error"
	// or "already_done" (answered from its stored result); code is the
	// error code of an "error".
	JobDone(op wire.Op, outcome string, code wire.Code, d time.Duration)
	// Retry is called before each retry of a job, with the error's class.
	Retry(op wire.Op, class string)
	// MySQLError is called for every failed attempt that MySQL failed,
	// with the error's class.
	MySQLError(class string)
	// HandedBack is called when a job goes back to the stream unfinished.
	HandedBack(reason string)
}

type nopObserver struct{}

func (nopObserver) JobDone(wire.Op, string, wire.Code, time.Duration) {}
func (nopObserver) Retry(wire.Op, string)                             {}
func (nopObserver) HandedBack(string)                                 {}
func (nopObserver) MySQLError(string)                                 {}

// Config is what a Worker is built from.
type Config struct {
	Prefix  string
	Targets map[string]Ops
	Keys    Sealer
	Secrets SecretStore
	Results ResultStore
	Intents Intents
	// OldPasswords keeps when retained old passwords end; nil refuses
	// keep_old_for and discard_old_password jobs.
	OldPasswords OldPasswordSchedule
	// Jobs, when set, erases jobs that carried a sealed password once
	// they are answered.
	Jobs JobsStream
	// StoreEncrypted says the jobs stream's store is encrypted at rest.
	// Jobs that carried a password are then deleted by their ack like any
	// other instead of erased: a deleted job stays readable only to
	// whoever holds the store key, as every job in the stream is. An
	// erase rewrites the job's whole block file under the stream's lock
	// (about a millisecond per job, longer as the block grows), so a flood
	// of jobs with a password field would hold up every target's jobs.
	StoreEncrypted   bool
	GeneratePassword func() (secret.Secret, error)
	// RetryBudget is how long a job's transient MySQL faults are retried,
	// counted from when this worker received it.
	RetryBudget time.Duration
	// AckWait is the consumer's ack wait; queued and running jobs are
	// kept alive every two thirds of it.
	AckWait time.Duration
	// ShutdownGrace bounds how long a running job may go on after Run's
	// context ends; then its statement is cancelled and the job handed back.
	ShutdownGrace time.Duration
	Logger        *zap.Logger
	// Observer receives metrics events; none when nil.
	Observer Observer
	// Pacer, shared by the process's workers, paces refused jobs while
	// valid ones run; each worker has its own when nil.
	Pacer *Pacer
	// Window is how many jobs the consumer delivers without an ack (its
	// MaxAckPending); streams.MaxAckPending when zero.
	Window int
	// FreshFrom, when not zero, is the first stream sequence stored after
	// the consumer was created (streams.TakeOverPartition): a first
	// delivery from it on was never delivered before, to any process, so
	// its job has recorded nothing yet, which spares a keep-old reset a
	// read. Zero: any job may have been delivered before.
	FreshFrom uint64
}

// Worker works the jobs of one consumer (a partition's, or the misc one)
// as a pipeline of stages, each in its own file:
//
//   - the fetcher (fetcher.go) takes deliveries from the consumer and
//     queues each on its target's lane, never blocking;
//   - a lane (lane.go) runs its target's jobs in stream order: it takes
//     everything queued, up to maxBatch, as one batch, without waiting
//     for more;
//   - the executor (executor.go) decides what each job of a batch comes
//     to: refused from the job alone, answered from its stored result, or
//     run against MySQL, many accounts in one statement (batch.go) or one
//     alone (attempt.go);
//   - the completer (completer.go) is the one place that publishes
//     results, acks, hands back and counts metrics, for a whole batch at
//     once.
//
// Order holds by construction (docs/architecture.md): one process works a
// partition at a time, a lane runs its jobs in order, and a job is never
// handed back while the process goes on working its partition.
type Worker struct {
	cfg Config
	log *zap.Logger

	mu       sync.Mutex
	lanes    map[string]*lane
	stopping bool
	// held counts the deliveries queued or running in the lanes: the
	// jobs of the consumer's window that this worker holds.
	held    int
	running sync.WaitGroup

	stopCtx  context.Context // ends when shutdown starts: no new attempts
	stopNow  context.CancelFunc
	hardCtx  context.Context // ends after the grace period: statements cancelled
	hardStop context.CancelFunc
}

// NewWorker checks cfg and returns a Worker.
func NewWorker(cfg Config) (*Worker, error) {
	switch {
	case cfg.Prefix == "":
		return nil, errors.New("jobs: Prefix is required")
	case cfg.Keys == nil || cfg.Secrets == nil || cfg.Results == nil || cfg.Intents == nil:
		return nil, errors.New("jobs: Keys, Secrets, Results and Intents are required")
	case cfg.GeneratePassword == nil:
		return nil, errors.New("jobs: GeneratePassword is required")
	}
	if cfg.RetryBudget <= 0 {
		cfg.RetryBudget = 5 * time.Minute
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = 20 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if cfg.Pacer == nil {
		cfg.Pacer = NewPacer(0)
	}
	if cfg.Window <= 0 {
		cfg.Window = streams.MaxAckPending
	}
	w := &Worker{cfg: cfg, log: cfg.Logger, lanes: map[string]*lane{}}
	w.stopCtx, w.stopNow = context.WithCancel(context.Background())
	w.hardCtx, w.hardStop = context.WithCancel(context.Background())
	return w, nil
}
