package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/service"
)

// Child roles: the benchmark runs the nats-server and the worker as
// processes of their own (this binary started again with a role as its
// first argument), so that each one's CPU time and memory are its own.
const (
	roleNATS   = "_nats"
	roleWorker = "_worker"
)

// Status lines a child writes on stdout for the benchmark.
const (
	lineReady    = "ready "
	lineProfiled = "profiled "
)

// runNATS is the nats-server role: a JetStream server with file storage,
// as a deployment's separate NATS would be, in a process of its own. It
// prints "ready <url>" and runs until SIGTERM or SIGINT.
func runNATS(args []string) error {
	fs := flag.NewFlagSet(roleNATS, flag.ContinueOnError)
	store := fs.String("store", "", "JetStream store directory")
	profPort := fs.Int("prof-port", 0, "serve pprof on 127.0.0.1 at this port; 0: off")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv, err := server.NewServer(&server.Options{
		ServerName: "dbusers-bench",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   *store,
		NoSigs:     true,
		NoLog:      true,
		ProfPort:   *profPort,
	})
	if err != nil {
		return fmt.Errorf("nats-server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return errors.New("nats-server: not ready after 30s")
	}
	fmt.Printf("%s%s\n", lineReady, srv.ClientURL())
	<-ctx.Done()
	srv.Shutdown()
	srv.WaitForShutdown()
	return nil
}

// runWorker is the worker role: service.Start with cmd/worker's logger (JSON
// at info level on stderr, one line per job, no sampling), so it does what
// bin/worker does. SIGUSR1 starts a CPU profile into -cpuprofile and SIGUSR2
// stops it and prints "profiled <path>"; SIGTERM stops the worker.
func runWorker(args []string) error {
	fs := flag.NewFlagSet(roleWorker, flag.ContinueOnError)
	configPath := fs.String("config", "", "worker configuration file")
	profilePath := fs.String("cpuprofile", "", "where SIGUSR1..SIGUSR2 writes a CPU profile")
	if err := fs.Parse(args); err != nil {
		return err
	}
	zcfg := zap.NewProductionConfig()
	zcfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	zcfg.Sampling = nil
	log, err := zcfg.Build()
	if err != nil {
		return fmt.Errorf("logger: %w", err)
	}
	defer func() { _ = log.Sync() }()
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	svc, err := service.Start(startCtx, cfg, service.Options{Logger: log})
	cancel()
	if err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	fmt.Printf("%s%s\n", lineReady, svc.PublicKey())

	profSig := make(chan os.Signal, 2)
	signal.Notify(profSig, syscall.SIGUSR1, syscall.SIGUSR2)
	var profFile *os.File
	stopProfile := func() {
		if profFile == nil {
			return
		}
		pprof.StopCPUProfile()
		_ = profFile.Close()
		fmt.Printf("%s%s\n", lineProfiled, profFile.Name())
		profFile = nil
	}
	defer stopProfile()
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case <-svc.Done():
			running = false
		case sig := <-profSig:
			switch {
			case sig == syscall.SIGUSR1 && profFile == nil && *profilePath != "":
				f, err := os.Create(*profilePath)
				if err != nil {
					log.Error("cpu profile", zap.Error(err))
					continue
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					_ = f.Close()
					log.Error("cpu profile", zap.Error(err))
					continue
				}
				profFile = f
			case sig == syscall.SIGUSR2:
				stopProfile()
			}
		}
	}
	stopProfile()
	return svc.Stop()
}
