// Command dbusers-api serves the hosting platform's database-users HTTP
// API and the dashboard (contract §8) over the dbusers client: another
// orchestrator of the worker, reaching it only through NATS, holding no
// MySQL credential.
//
// Usage:
//
//	dbusers-api -config FILE [-log-format json|console] [-log-level info]
//	dbusers-api -config FILE -print-token DATABASE_ID [-token-ttl 12h]
//
// The second form prints a token for DATABASE_ID signed with the
// configured key, as the platform would mint it (for development and
// checks; a platform mints its own).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dbusers/dbusers/client"
	"github.com/dbusers/dbusers/internal/dashboard"
	"github.com/dbusers/dbusers/internal/natsconn"
	"github.com/dbusers/dbusers/internal/platformapi"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("dbusers-api", flag.ContinueOnError)
	configPath := fs.String("config", "", "path of the YAML configuration file (required)")
	logFormat := fs.String("log-format", "json", "log format: json or console")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	printToken := fs.String("print-token", "", "print a token for this database id, signed with the configured key, and exit")
	tokenTTL := fs.Duration("token-ttl", 12*time.Hour, "how long a -print-token token is valid")
	withParent := fs.Bool("exit-with-parent", false, "stop (as on SIGTERM) when the parent process ends (Linux; make run)")
	devPlatformAddr := fs.String("dev-platform", "", "development only: also serve on this loopback address a stand-in of the platform's auth and main APIs, for the platform's CLI (make run)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *configPath == "" {
		fmt.Fprintln(os.Stderr, "dbusers-api: -config FILE is required (see deploy/api-dev.yaml)")
		return 2
	}
	cfg, err := platformapi.LoadConfig(*configPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dbusers-api:", err)
		return 1
	}
	key, err := platformapi.LoadKey(cfg.Auth.TokenKeyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dbusers-api:", err)
		return 1
	}
	if *printToken != "" {
		return mint(key, cfg, *printToken, *tokenTTL)
	}
	log, err := newLogger(*logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dbusers-api:", err)
		return 2
	}
	defer func() { _ = log.Sync() }()
	// SIGINT too: make run starts the API in the background, where the
	// shell ignores SIGINT; asking for it here undoes that, so Ctrl-C stops
	// the API with the worker.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if *withParent && !exitWithParent() {
		log.Info("the parent process is gone: not starting")
		return 0
	}
	if *devPlatformAddr != "" {
		host, _, err := net.SplitHostPort(*devPlatformAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			fmt.Fprintln(os.Stderr, "dbusers-api: -dev-platform takes a loopback address such as 127.0.0.1:14481: it mints tokens for anyone")
			return 2
		}
		dev, err := devPlatform(*devPlatformAddr, "http://"+cfg.Listen, bytes.Clone(key), cfg.Targets(), log)
		if err != nil {
			log.Error("-dev-platform", zap.Error(err))
			return 1
		}
		defer dev.Close()
	}
	if err := serve(ctx, cfg, key, log); err != nil {
		log.Error("dbusers-api", zap.Error(err))
		return 1
	}
	log.Info("stopped")
	return 0
}

// mint prints a token for databaseID, as the platform mints one.
func mint(key []byte, cfg *platformapi.Config, databaseID string, ttl time.Duration) int {
	if _, ok := cfg.Targets()[databaseID]; !ok {
		fmt.Fprintf(os.Stderr, "dbusers-api: database %q is not in the config's databases\n", databaseID)
		return 1
	}
	tok, err := platformapi.SignToken(key, map[string]any{"sub": databaseID, "exp": time.Now().Add(ttl).Unix(), "iat": time.Now().Unix()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "dbusers-api:", err)
		return 1
	}
	fmt.Println(tok)
	return 0
}

// serve runs the API until ctx ends, then lets the requests in flight end
// (each is bounded by the config's timeout) before closing NATS.
func serve(ctx context.Context, cfg *platformapi.Config, key []byte, log *zap.Logger) error {
	conn := cfg.NATS.ConnSettings()
	connOpts, err := conn.Options(platformapi.ConnNames())
	if err != nil {
		return err
	}
	natsURL := natsconn.RedactURLs(cfg.NATS.URL)
	opts := append([]nats.Option{
		nats.Name("dbusers-api"),
		nats.MaxReconnects(-1), // a NATS restart must not need an API restart
		// Nor must the order of start-up: the API may come up first.
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("NATS disconnected", zap.String("nats", natsURL), zap.Error(err))
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("NATS reconnected", zap.String("nats", natsURL)) }),
	}, connOpts...)
	nc, err := nats.Connect(cfg.NATS.URL, opts...)
	if err != nil {
		if hint := conn.Hint(err, platformapi.ConnNames()); hint != "" {
			return fmt.Errorf("connect to NATS at %s: %w (%s)", natsURL, err, hint)
		}
		return fmt.Errorf("connect to NATS at %s: %w", natsURL, err)
	}
	defer nc.Close()
	if !nc.IsConnected() {
		log.Warn("NATS is not reachable yet; connecting in the background", zap.String("nats", natsURL))
	}
	copts := []client.Option{client.WithPrefix(cfg.NATS.Prefix), client.WithTimeout(cfg.Timeout)}
	if cfg.NATS.WorkerXKey != "" {
		copts = append(copts, client.WithWorkerKey(cfg.NATS.WorkerXKey))
	}
	c, err := client.New(nc, copts...)
	if err != nil {
		return err
	}
	verifier, err := platformapi.NewVerifier(key, nil)
	if err != nil {
		return err
	}
	clear(key)
	api, err := platformapi.New(platformapi.Options{
		Users: c, Verifier: verifier, Databases: cfg.Targets(), Timeout: cfg.Timeout,
		Dashboard: dashboard.Handler(), Logger: log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// A request waits up to the timeout for the worker, then writes.
		WriteTimeout: cfg.Timeout + 30*time.Second,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     zap.NewStdLog(log.Named("http")),
	}
	// Whether a worker answers is worth a line at start-up, not a refusal
	// to start: the API answers 503 until one does.
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if info, err := c.WorkerInfo(ictx); err != nil {
		log.Warn("no worker answers yet; requests get 503 until one does", zap.String("nats", natsURL), zap.Error(err))
	} else {
		log.Info("worker found", zap.String("version", info.Version))
	}
	cancel()
	log.Info("dbusers-api ready", zap.String("listen", ln.Addr().String()), zap.String("nats", natsURL),
		zap.Int("databases", len(cfg.Databases)), zap.Duration("timeout", cfg.Timeout))

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("signal received: finishing the requests in flight")
	sctx, scancel := context.WithTimeout(context.Background(), cfg.Timeout+10*time.Second)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func newLogger(format, level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.DisableStacktrace = true
	default:
		return nil, fmt.Errorf("-log-format: %q is not json or console", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.Sampling = nil
	return cfg.Build()
}
