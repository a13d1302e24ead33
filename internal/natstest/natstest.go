// Package natstest runs in-process nats-servers with JetStream for tests,
// each with its own store, stopped when the test ends.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options tune Run.
type Options struct {
	// StoreDir is the JetStream store; a fresh temporary one when empty.
	StoreDir string
	// Port is the client port: -1 for a random one.
	Port int
	// ServerName is set when a restart on the same store must be the same
	// server.
	ServerName string
	// Edit, when set, changes the server's options before it starts
	// (authorization, TLS).
	Edit func(*server.Options)
}

// Run starts a JetStream server on 127.0.0.1 and waits until it accepts
// connections.
func Run(t testing.TB, opts Options) *server.Server {
	t.Helper()
	if opts.StoreDir == "" {
		opts.StoreDir = t.TempDir()
	}
	if opts.Port == 0 {
		opts.Port = -1
	}
	so := &server.Options{JetStream: true, StoreDir: opts.StoreDir, ServerName: opts.ServerName,
		Host: "127.0.0.1", Port: opts.Port, NoSigs: true, NoLog: true}
	if opts.Edit != nil {
		opts.Edit(so)
	}
	s, err := server.NewServer(so)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	return s
}

// Connect opens a connection to s (in-process, without TCP) and its
// JetStream context, closed when the test ends.
func Connect(t testing.TB, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}
