// Command worker runs the dbusers job worker: it takes user.create,
// user.reset_password, user.delete and user.list jobs from JetStream and
// applies them to the configured MySQL targets.
//
// Usage:
//
//	worker -config FILE [-log-format json|console] [-log-level info]
//
// A configuration or start-up error is one plain sentence on stderr, in
// every log format, and exit status 2: it is read by the operator who
// made it, not by a log pipeline. Status 1 is an error after the worker
// was ready; 0 is a clean stop on SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/service"
)

// Exit statuses.
const (
	exitOK      = 0
	exitRuntime = 1 // the worker was ready, then failed
	exitStartup = 2 // flags, configuration or start-up
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path of the YAML configuration file (required)")
	logFormat := fs.String("log-format", "json", "log format: json or console")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return exitStartup
	}
	if *configPath == "" {
		return startupFailure(stderr, "-config FILE is required (see deploy/dev.yaml)", nil)
	}
	log, err := newLogger(*logFormat, *logLevel, stderr)
	if err != nil {
		return startupFailure(stderr, "invalid flag", err)
	}
	defer func() { _ = log.Sync() }()

	cfg, err := config.Load(*configPath)
	if err != nil {
		return startupFailure(stderr, "the configuration cannot be used", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	svc, err := service.Start(startCtx, cfg, service.Options{Logger: log})
	cancel()
	if err != nil {
		_ = log.Sync() // the lines logged so far come before the sentence
		return startupFailure(stderr, "cannot start", err)
	}
	select {
	case <-ctx.Done():
		log.Info("signal received: stopping")
	case <-svc.Done():
	}
	if err := svc.Stop(); err != nil {
		log.Error("worker stopped", zap.Error(err))
		return exitRuntime
	}
	log.Info("stopped")
	return exitOK
}

// newLogger returns the logger of the flags, writing to w: JSON with stack
// traces on errors, or console lines without them.
func newLogger(format, level string, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	out := zapcore.Lock(zapcore.AddSync(w))
	opts := []zap.Option{zap.AddCaller(), zap.ErrorOutput(out)}
	var enc zapcore.Encoder
	switch format {
	case "json":
		ec := zap.NewProductionEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
		opts = append(opts, zap.AddStacktrace(zapcore.ErrorLevel))
	case "console":
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewConsoleEncoder(ec)
		opts = append(opts, zap.Development())
	default:
		return nil, fmt.Errorf("-log-format: %q is not json or console", format)
	}
	// No sampling: one line per job, always.
	return zap.New(zapcore.NewCore(enc, out, lvl), opts...), nil
}
