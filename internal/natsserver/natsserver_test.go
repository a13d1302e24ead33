package natsserver

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func start(t *testing.T, listen, storeDir string, log *zap.Logger) *server.Server {
	t.Helper()
	s, err := Start(listen, storeDir, log)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

func connect(t *testing.T, s *server.Server) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestStartServesJetStream(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	s := start(t, "127.0.0.1:0", t.TempDir(), zap.New(core))
	js := connect(t, s)
	if _, err := js.AccountInfo(t.Context()); err != nil {
		t.Fatalf("AccountInfo: %v", err)
	}
	if s.Name() != ServerName {
		t.Errorf("server name %q, want %q", s.Name(), ServerName)
	}
	// Quiet at info: only our own ready line, none of the server's banner.
	if n := logs.Len(); n != 1 {
		t.Errorf("%d info lines, want 1: %v", n, logs.All())
	}
}

func TestRestartKeepsStreams(t *testing.T) {
	store := t.TempDir()
	first, err := Start("127.0.0.1:0", store, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Shutdown() })
	addr := first.Addr().String()
	js := connect(t, first)
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "KEEP", Subjects: []string{"keep.>"}}); err != nil {
		t.Fatal(err)
	}
	first.Shutdown()
	first.WaitForShutdown()

	second := start(t, addr, store, nil)
	if _, err := connect(t, second).Stream(t.Context(), "KEEP"); err != nil {
		t.Fatalf("stream after restart: %v", err)
	}
}

func TestStartErrors(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = taken.Close() })
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		listen string
		store  string
		want   []string
	}{
		{"port taken", taken.Addr().String(), t.TempDir(), []string{"nats.embedded.listen", taken.Addr().String(), "another port", "nats.url"}},
		{"not host:port", "4222", t.TempDir(), []string{"nats.embedded.listen", "host:port"}},
		{"bad port", "127.0.0.1:http", t.TempDir(), []string{"nats.embedded.listen"}},
		{"empty store", "127.0.0.1:0", "", []string{"nats.embedded.store_dir"}},
		{"store is a file", "127.0.0.1:0", notDir, []string{"JetStream"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			begin := time.Now()
			s, err := Start(tt.listen, tt.store, nil)
			if err == nil {
				s.Shutdown()
				t.Fatal("Start: want an error")
			}
			if d := time.Since(begin); d > 3*time.Second {
				t.Errorf("took %s, want a quick failure", d)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
