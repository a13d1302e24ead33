// Command worker runs the dbusers job worker: it takes user.create,
// user.reset_password, user.delete and user.list jobs from JetStream and
// applies them to the configured MySQL targets.
//
// Usage:
//
//	worker -config FILE [-log-format json|console] [-log-level info]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/service"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	configPath := fs.String("config", "", "path of the YAML configuration file (required)")
	logFormat := fs.String("log-format", "json", "log format: json or console")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if *configPath == "" {
		fmt.Fprintln(os.Stderr, "worker: -config FILE is required (see deploy/dev.yaml)")
		return 2
	}
	log, err := newLogger(*logFormat, *logLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 2
	}
	defer func() { _ = log.Sync() }()

	cfg, err := config.Load(*configPath)
	if err != nil {
		log.Error("configuration", zap.String("file", *configPath), zap.Error(err))
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	svc, err := service.Start(startCtx, cfg, service.Options{Logger: log})
	cancel()
	if err != nil {
		log.Error("start", zap.Error(err))
		return 1
	}
	select {
	case <-ctx.Done():
		log.Info("signal received: stopping")
	case <-svc.Done():
	}
	if err := svc.Stop(); err != nil {
		log.Error("worker stopped", zap.Error(err))
		return 1
	}
	log.Info("stopped")
	return 0
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
	cfg.Sampling = nil // one line per job, always
	return cfg.Build()
}
