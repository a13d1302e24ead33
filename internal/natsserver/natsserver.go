// Package natsserver owns the embedded nats-server that the worker runs in
// process when nats.url is empty: its options, its log routing and its
// start-up checks.
package natsserver

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ServerName is fixed so a restart on the same store directory is the same
// JetStream server and finds its streams again.
const ServerName = "dbusers-embedded"

// readyTimeout bounds the wait for the server to accept connections; start-up
// includes recovering the JetStream store, which can take a few seconds.
const readyTimeout = 10 * time.Second

// Start runs an in-process nats-server with JetStream, listening on listen
// (host:port; port 0 picks a free one) with its store in storeDir, and
// returns once it accepts connections. A port already in use fails at once.
// With a storeKey, the store is encrypted at rest (ChaCha20-Poly1305), so
// no job, result or sealed password is readable in its files, also after
// deletion. The caller stops it with Shutdown and WaitForShutdown. log may
// be nil.
func Start(listen, storeDir, storeKey string, log *zap.Logger) (*server.Server, error) {
	if log == nil {
		log = zap.NewNop()
	}
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("nats.embedded.listen %q: want host:port: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("nats.embedded.listen %q: port must be 0 to 65535", listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT // for nats-server, 0 means its default 4222
	} else if err := checkFree(listen); err != nil {
		// nats-server would only report this through its fatal log from a
		// goroutine; checking first gives a clear error at once.
		return nil, err
	}
	if storeDir == "" {
		return nil, errors.New("nats.embedded.store_dir: must not be empty")
	}

	opts := &server.Options{
		ServerName: ServerName,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true, // the worker handles signals itself
	}
	if storeKey != "" {
		opts.JetStreamKey = storeKey
		opts.JetStreamCipher = server.ChaCha
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats-server: %w", err)
	}
	zl := &zapLogger{log: log.Named("nats-server")}
	s.SetLoggerV2(zl, log.Core().Enabled(zapcore.DebugLevel), false, false)
	s.Start()

	deadline := time.Now().Add(readyTimeout)
	for !s.ReadyForConnections(100 * time.Millisecond) {
		if msg := zl.fatal(); msg != "" {
			s.Shutdown()
			return nil, fmt.Errorf("embedded nats-server on %s (nats.embedded.listen), store %s: %s", listen, storeDir, msg)
		}
		if time.Now().After(deadline) {
			s.Shutdown()
			return nil, fmt.Errorf("embedded nats-server on %s (nats.embedded.listen), store %s: not ready after %s", listen, storeDir, readyTimeout)
		}
	}
	if !s.JetStreamEnabled() {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats-server: JetStream did not start (store %s)", storeDir)
	}
	log.Info("embedded nats-server ready", zap.String("url", s.ClientURL()), zap.String("store_dir", storeDir))
	return s, nil
}

// checkFree fails when something already listens on addr.
func checkFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("nats.embedded.listen: cannot listen on %s (%w); pick another port there, or set nats.url to use an existing NATS server", addr, err)
	}
	if err := l.Close(); err != nil {
		return fmt.Errorf("nats.embedded.listen: probe %s: %w", addr, err)
	}
	return nil
}

// zapLogger routes nats-server's log lines to zap. Its notices (the start-up
// banner) go to debug so the worker stays quiet at info. A fatal line is
// logged as an error and kept, since the server reports start-up failures
// only that way; it must not exit the worker.
type zapLogger struct {
	log *zap.Logger

	mu       sync.Mutex
	firstErr string
}

func (z *zapLogger) fatal() string {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.firstErr
}

// write formats only when the level is enabled: most lines are dropped.
func (z *zapLogger) write(level zapcore.Level, format string, v []any) {
	if ce := z.log.Check(level, ""); ce != nil {
		ce.Message = fmt.Sprintf(format, v...)
		ce.Write()
	}
}

// Noticef logs a nats-server notice at debug level.
func (z *zapLogger) Noticef(format string, v ...any) { z.write(zapcore.DebugLevel, format, v) }

// Warnf logs a nats-server warning.
func (z *zapLogger) Warnf(format string, v ...any) { z.write(zapcore.WarnLevel, format, v) }

// Errorf logs a nats-server error.
func (z *zapLogger) Errorf(format string, v ...any) { z.write(zapcore.ErrorLevel, format, v) }

// Debugf logs a nats-server debug line.
func (z *zapLogger) Debugf(format string, v ...any) { z.write(zapcore.DebugLevel, format, v) }

// Tracef drops protocol traces: they are per message and may carry payloads.
func (z *zapLogger) Tracef(string, ...any) {}

// Fatalf logs at error level and records the first fatal message for Start.
func (z *zapLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	z.log.Error(msg)
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.firstErr == "" {
		z.firstErr = msg
	}
}
