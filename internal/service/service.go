// Package service assembles the worker process from its configuration: the
// NATS connection (or the embedded nats-server), the JetStream objects, the
// targets' MySQL pools, the job worker and the info endpoint. cmd/worker and
// the integration tests run the worker through it.
package service

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"go.uber.org/zap"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/jobs"
	"github.com/dbusers/dbusers/internal/natsserver"
	"github.com/dbusers/dbusers/internal/oldpasswords"
	"github.com/dbusers/dbusers/internal/partitions"
	"github.com/dbusers/dbusers/internal/streams"
	"github.com/dbusers/dbusers/internal/telemetry"
	"github.com/dbusers/dbusers/internal/vault"
	"github.com/dbusers/dbusers/secret"
)

// Version is the worker's version, as the info endpoint reports it.
const Version = "0.1.0"

// Options tune Start.
type Options struct {
	Logger *zap.Logger
	// PrivilegeRecheck is how long a target's passed privilege check
	// holds before a job or /readyz runs it again; DefaultPrivilegeRecheck
	// when zero.
	PrivilegeRecheck time.Duration
	// StraySweepEvery is the pause between sweeps for jobs no consumer
	// reads (jobs.StraySweeper); a minute when zero.
	StraySweepEvery time.Duration
	// OldPasswordCheckEvery is the pause between the expiry watcher's
	// passes over the old-password schedule (oldpasswords.Expirer);
	// oldpasswords.DefaultEvery when zero.
	OldPasswordCheckEvery time.Duration
}

// DefaultPrivilegeRecheck bounds how long a privilege granted to a
// target's admin after its check passed goes unnoticed. One SHOW GRANTS
// per target this often costs nothing next to the jobs.
const DefaultPrivilegeRecheck = 10 * time.Minute

// Service is a running worker.
type Service struct {
	log      *zap.Logger
	server   *server.Server // nil when connected to an outside NATS
	nc       *nats.Conn
	keys     *vault.Keys
	closers  []func()
	info     micro.Service
	http     *telemetry.Server
	metrics  *telemetry.Metrics
	balancer *partitions.Balancer
	cancel   context.CancelFunc
	done     chan struct{}
	// privilegeRecheck is PrivilegeCheck.Recheck of every target.
	privilegeRecheck time.Duration
}

// Start brings the worker up and returns once jobs are being taken and the
// info endpoint answers. Stop ends it.
func Start(ctx context.Context, cfg *config.Config, opts Options) (_ *Service, err error) {
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	s := &Service{log: log, done: make(chan struct{}), privilegeRecheck: opts.PrivilegeRecheck}
	if s.privilegeRecheck <= 0 {
		s.privilegeRecheck = DefaultPrivilegeRecheck
	}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()

	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if s.keys, err = vault.LoadOrCreateKeys(cfg.Vault.XKeySeedFile); err != nil {
		return nil, fmt.Errorf("vault.xkey_seed_file: %w", err)
	}
	if err := s.connect(cfg); err != nil {
		return nil, err
	}
	js, err := jetstream.New(s.nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	settings := streams.Settings{
		Prefix:          cfg.NATS.Prefix,
		Replicas:        cfg.NATS.Replicas,
		DuplicateWindow: cfg.NATS.DuplicateWindow,
		ResultsMaxAge:   cfg.Results.MaxAge,
		VaultTTL:        cfg.Vault.TTL,
		Partitions:      cfg.NATS.Partitions,
		AckWait:         cfg.NATS.AckWait,
		LeaseTTL:        cfg.NATS.LeaseTTL,
		JobsMaxBytes:    cfg.NATS.JobsMaxBytes,
	}
	objs, err := streams.Ensure(ctx, js, settings)
	if err != nil {
		return nil, err
	}
	targets, err := s.openTargets(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.metrics = telemetry.NewMetrics(func(ctx context.Context) (float64, error) {
		return pendingJobs(ctx, objs)
	})
	jobsStream := jobs.NewStreamJobs(s.nc, objs.Jobs, cfg.NATS.Prefix, cfg.NATS.Partitions)
	workerCfg := jobs.Config{
		Prefix:           cfg.NATS.Prefix,
		Targets:          targets,
		Keys:             s.keys,
		Secrets:          vault.NewStore(js, objs.Vault, cfg.Vault.TTL),
		Results:          jobs.NewStreamResults(js, objs.Results),
		Intents:          jobs.NewKVIntents(js, objs.Intents),
		OldPasswords:     oldpasswords.NewSchedule(js, objs.OldPasswords),
		Jobs:             jobsStream,
		StoreEncrypted:   s.server != nil || cfg.NATS.StoreEncrypted,
		GeneratePassword: jobs.GeneratePassword,
		RetryBudget:      cfg.Retry.Budget,
		AckWait:          cfg.NATS.AckWait,
		ShutdownGrace:    cfg.ShutdownGrace,
		Logger:           log,
		Observer:         s.metrics,
		Pacer:            jobs.NewPacer(0), // one for all partitions: a flood is paced as a whole
	}
	// Fail now on a config the worker refuses, not in every partition.
	if _, err := jobs.NewWorker(workerCfg); err != nil {
		return nil, err
	}
	runPartition := func(ctx context.Context, n int) {
		// Order across processes: the partition is worked anew from its
		// oldest job (docs/architecture.md).
		var consumer jetstream.Consumer
		wcfg := workerCfg
		for consumer == nil {
			tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			c, freshFrom, err := streams.TakeOverPartition(tctx, js, settings, n)
			cancel()
			if err == nil {
				consumer, wcfg.FreshFrom = c, freshFrom
				break
			}
			log.Warn("take over a partition", zap.Int("partition", n), zap.Error(err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
		w, _ := jobs.NewWorker(wcfg)
		if err := w.Run(ctx, s.puller(consumer, log.With(zap.Int("partition", n))), nil); err != nil {
			log.Error("partition worker", zap.Int("partition", n), zap.Error(err))
		}
	}
	s.balancer = partitions.New(partitions.Config{
		KV:         objs.Leases,
		ID:         instanceID(),
		Partitions: cfg.NATS.Partitions,
		TTL:        cfg.NATS.LeaseTTL,
		Run:        runPartition,
		Logger:     log,
	})

	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	var wg sync.WaitGroup
	miscReady, balanced := make(chan struct{}), make(chan struct{})
	// Jobs too short to partition are all invalid; every process answers them.
	misc, _ := jobs.NewWorker(workerCfg)
	wg.Go(func() {
		if err := misc.Run(runCtx, s.puller(objs.Misc, log.With(zap.String("consumer", "misc"))), func() { close(miscReady) }); err != nil {
			log.Error("misc worker", zap.Error(err))
			close(miscReady)
		}
	})
	wg.Go(func() { s.balancer.Run(runCtx, func() { close(balanced) }) })
	// Jobs stored where no consumer reads them (wildcard subjects) are
	// answered by a sweep; every process sweeps, each job is answered once.
	sweeper := &jobs.StraySweeper{Prefix: cfg.NATS.Prefix, Store: jobsStream, Results: workerCfg.Results,
		Every: opts.StraySweepEvery, Logger: log, Observer: s.metrics}
	wg.Go(func() { sweeper.Run(runCtx) })
	// Old passwords end at their time whichever process is alive: every
	// process watches the schedule and publishes the discard jobs that are
	// due, each kept once by the jobs stream's duplicate window.
	expirer := oldpasswords.NewExpirer(js, objs.OldPasswords, oldpasswords.Settings{Prefix: cfg.NATS.Prefix,
		DuplicateWindow: cfg.NATS.DuplicateWindow, Every: opts.OldPasswordCheckEvery, Logger: log})
	wg.Go(func() { expirer.Run(runCtx) })
	go func() {
		wg.Wait()
		close(s.done)
	}()
	<-miscReady
	<-balanced

	if cfg.HTTP.Listen != "" {
		if s.http, err = telemetry.Serve(cfg.HTTP.Listen, s.metrics, s.readiness(js, cfg, objs, targets)); err != nil {
			return nil, err
		}
	}
	// Orchestrators in accounts of their own purge their vault entries
	// through the worker (deploy/nats-accounts.conf).
	purge, err := vault.ServePurge(s.nc, js, cfg.NATS.Prefix, objs.Vault.Bucket())
	if err != nil {
		return nil, fmt.Errorf("vault purge service: %w", err)
	}
	s.closers = append(s.closers, func() { _ = purge.Unsubscribe() })
	// The info endpoint comes last: answering it promises that jobs are
	// being taken.
	if s.info, err = serveInfo(s.nc, cfg.NATS.Prefix, s.keys.PublicKey()); err != nil {
		return nil, err
	}
	// The server must know the endpoint's subscription before Start says
	// the worker is ready.
	if err := s.nc.FlushTimeout(5 * time.Second); err != nil {
		return nil, fmt.Errorf("info endpoint: %w", err)
	}
	log.Info("worker ready", zap.String("nats", s.ClientURL()), zap.String("prefix", cfg.NATS.Prefix),
		zap.Int("targets", len(targets)), zap.Ints("partitions", s.balancer.Held()),
		zap.String("xkey", s.keys.PublicKey()))
	return s, nil
}

// instanceID names this process among the workers: host, pid and a random
// part, so a restarted process is a new member.
func instanceID() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%x", strings.NewReplacer(".", "_", " ", "_", "*", "_", ">", "_").Replace(host), os.Getpid(), b)
}

// pendingJobs sums the jobs waiting in every partition and the misc consumer.
func pendingJobs(ctx context.Context, objs *streams.Objects) (float64, error) {
	var total float64
	for _, c := range append(objs.Partitions[:len(objs.Partitions):len(objs.Partitions)], objs.Misc) {
		info, err := c.Info(ctx)
		if err != nil {
			return 0, err
		}
		total += float64(info.NumPending) + float64(info.NumAckPending)
	}
	return total, nil
}

// readiness is what /readyz checks: NATS connected, streams present, and
// every target reachable.
func (s *Service) readiness(js jetstream.JetStream, cfg *config.Config, objs *streams.Objects, targets map[string]jobs.Ops) map[string]telemetry.Check {
	checks := map[string]telemetry.Check{
		"nats": func(context.Context) error {
			if st := s.nc.Status(); st != nats.CONNECTED {
				return fmt.Errorf("NATS connection is %s", st)
			}
			return nil
		},
		"streams": func(ctx context.Context) error {
			for _, st := range []jetstream.Stream{objs.Jobs, objs.Results} {
				if _, err := js.Stream(ctx, st.CachedInfo().Config.Name); err != nil {
					return fmt.Errorf("stream %s: %w", st.CachedInfo().Config.Name, err)
				}
			}
			return nil
		},
	}
	for name, t := range targets {
		// A target is ready when MySQL answers and its admin account's
		// privilege check passed: one that answers but was refused runs no
		// job.
		if r, ok := t.(interface{ CheckReady(context.Context) error }); ok {
			checks["target "+name] = r.CheckReady
		}
	}
	return checks
}

func (s *Service) connect(cfg *config.Config) error {
	url := cfg.NATS.URL
	// A credential rotated on the server fails the reconnects until the
	// worker's file is updated too; without IgnoreAuthErrorAbort nats.go
	// would give up for good after two such failures.
	opts := []nats.Option{nats.Name("dbusers-worker"), nats.MaxReconnects(-1), nats.IgnoreAuthErrorAbort()}
	if url == "" {
		if cfg.NATS.Replicas > 1 {
			return errors.New("nats.replicas: the embedded server is a single node; use replicas 1 or set nats.url to a cluster")
		}
		storeKey, err := s.keys.StoreKey()
		if err != nil {
			return err
		}
		srv, err := natsserver.Start(cfg.NATS.Embedded.Listen, cfg.NATS.Embedded.StoreDir, storeKey, s.log)
		if err != nil {
			return err
		}
		s.server = srv
		opts = append(opts, nats.InProcessServer(srv))
	}
	// With the embedded server, Validate refused every authentication and
	// TLS key: conn is empty there.
	conn := cfg.NATS.ConnSettings()
	connOpts, err := conn.Options(config.ConnNames())
	if err != nil {
		return err
	}
	nc, err := nats.Connect(url, append(opts, connOpts...)...)
	if err != nil {
		if hint := conn.Hint(err, config.ConnNames()); hint != "" {
			return fmt.Errorf("nats.url: connect: %w: %s", err, hint)
		}
		return fmt.Errorf("nats.url: connect: %w", err)
	}
	s.nc = nc
	return nil
}

func (s *Service) openTargets(ctx context.Context, cfg *config.Config) (map[string]jobs.Ops, error) {
	targets := make(map[string]jobs.Ops, len(cfg.Targets))
	for i, tc := range cfg.Targets {
		t, err := s.openTarget(ctx, i, tc, cfg.SharedAdminDatabases(i))
		if err != nil {
			return nil, err
		}
		targets[tc.Name] = t
	}
	return targets, nil
}

// redactDSN returns user@address of a DSN, never its password.
func redactDSN(dsn secret.Secret) string {
	cfg, err := mysql.ParseDSN(dsn.Reveal())
	if err != nil {
		return "(unparsable DSN)"
	}
	return cfg.User + "@" + cfg.Net + "(" + cfg.Addr + ")"
}

// info is the answer of the info endpoint.
type info struct {
	XKey    string `json:"xkey"`
	Version string `json:"version"`
}

func serveInfo(nc *nats.Conn, prefix, xkey string) (micro.Service, error) {
	svc, err := micro.AddService(nc, micro.Config{
		Name:        "dbusers",
		Version:     Version,
		Description: "MySQL account jobs worker",
	})
	if err != nil {
		return nil, fmt.Errorf("info endpoint: %w", err)
	}
	answer := info{XKey: xkey, Version: Version}
	err = svc.AddEndpoint("info", micro.HandlerFunc(func(r micro.Request) { _ = r.RespondJSON(answer) }),
		micro.WithEndpointSubject(prefix+".info"))
	if err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("info endpoint: %w", err)
	}
	return svc, nil
}

// HTTPAddr is the address of the operations endpoint, "" when off.
func (s *Service) HTTPAddr() string {
	if s.http == nil {
		return ""
	}
	return s.http.Addr()
}

// Partitions returns the partitions this process works now.
func (s *Service) Partitions() []int { return s.balancer.Held() }

// ClientURL is the NATS URL clients use: the embedded server's, or the
// configured one.
func (s *Service) ClientURL() string {
	if s.server != nil {
		return s.server.ClientURL()
	}
	return s.nc.ConnectedUrlRedacted()
}

// PublicKey is the worker's curve public key.
func (s *Service) PublicKey() string { return s.keys.PublicKey() }

// Done is closed when the worker has stopped.
func (s *Service) Done() <-chan struct{} { return s.done }

// Stop stops taking jobs, finishes or hands back those in flight, and
// closes everything. It is safe to call more than once.
func (s *Service) Stop() error {
	if s.info != nil {
		_ = s.info.Stop()
	}
	if s.http != nil {
		_ = s.http.Close()
		s.http = nil
	}
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
	s.close()
	return nil
}

func (s *Service) close() {
	if s.nc != nil {
		_ = s.nc.FlushTimeout(2 * time.Second) // the last acks
		s.nc.Close()
		s.nc = nil
	}
	for _, c := range s.closers {
		c()
	}
	s.closers = nil
	if s.server != nil {
		s.server.Shutdown()
		s.server.WaitForShutdown()
		s.server = nil
	}
}

// puller pulls consumer's jobs on the service's connection; its warnings
// (lost pulls, which it recovers from) go to log.
func (s *Service) puller(consumer jetstream.Consumer, log *zap.Logger) *jobs.Puller {
	return jobs.NewPuller(s.nc, "", consumer, func(err error) { log.Warn("pull jobs", zap.Error(err)) })
}
