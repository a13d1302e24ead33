package natsserver

import (
	"bytes"
	"io/fs"
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
	s, err := Start(listen, storeDir, "", log)
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
	first, err := Start("127.0.0.1:0", store, "", nil)
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
			s, err := Start(tt.listen, tt.store, "", nil)
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

// TestStoreKeyEncryptsAtRest: with a store key, no payload, kept or
// deleted, is readable in the store's files (without one, the kept payload
// is: the control); the store reopens with the same key.
func TestStoreKeyEncryptsAtRest(t *testing.T) {
	for _, tt := range []struct {
		name      string
		key       string
		wantClear bool
	}{
		{"without key (control)", "", true},
		{"with key", "0123456789abcdef0123456789abcdef", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			store := t.TempDir()
			s, err := Start("127.0.0.1:0", store, tt.key, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
			js := connect(t, s)
			st, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "SECRET", Subjects: []string{"secret.>"}})
			if err != nil {
				t.Fatal(err)
			}
			payload := "sealed-" + strings.Repeat("Z", 40)
			deleted := "deleted-" + strings.Repeat("Y", 40)
			ack, err := js.Publish(t.Context(), "secret.x", []byte(deleted))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.Publish(t.Context(), "secret.y", []byte(payload)); err != nil {
				t.Fatal(err)
			}
			if err := st.DeleteMsg(t.Context(), ack.Sequence); err != nil {
				t.Fatal(err)
			}
			addr := s.Addr().String()
			s.Shutdown()
			s.WaitForShutdown()
			found := false
			_ = filepath.WalkDir(store, func(path string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					b, rerr := os.ReadFile(path)
					if rerr == nil && bytes.Contains(b, []byte(payload)) {
						found = true
					}
					if rerr == nil && tt.key != "" && bytes.Contains(b, []byte(deleted)) {
						t.Errorf("a deleted payload is readable in %s", path)
					}
				}
				return nil
			})
			if found != tt.wantClear {
				t.Fatalf("payload in the store's files: %v, want %v", found, tt.wantClear)
			}
			again, err := Start(addr, store, tt.key, nil)
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			t.Cleanup(func() { again.Shutdown(); again.WaitForShutdown() })
			if _, err := connect(t, again).Stream(t.Context(), "SECRET"); err != nil {
				t.Fatalf("stream after reopening with the key: %v", err)
			}
		})
	}
}
