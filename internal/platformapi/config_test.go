package platformapi

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	env := map[string]string{"PW": "s3cret-pw-123", "URL": "nats://n1:4222"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	minimal := "databases:\n  - id: ad-1\n    target: app\n"
	tests := []struct {
		name    string
		yaml    string
		check   func(t *testing.T, c *Config)
		wantErr string // from parsing or validation
	}{
		{name: "defaults", yaml: minimal, check: func(t *testing.T, c *Config) {
			if c.Listen != "127.0.0.1:8480" || c.NATS.URL != "nats://127.0.0.1:4222" || c.NATS.Prefix != "dbusers" ||
				c.Auth.TokenKeyFile != "./data/api-token.key" || c.Timeout != 30*time.Second {
				t.Errorf("defaults %+v", c)
			}
			if c.Targets()["ad-1"] != "app" {
				t.Errorf("targets %v", c.Targets())
			}
		}},
		{name: "environment", yaml: "nats:\n  url: ${URL}\n  user: api\n  password: ${PW}\n" + minimal, check: func(t *testing.T, c *Config) {
			if c.NATS.URL != "nats://n1:4222" || c.NATS.Password.Reveal() != "s3cret-pw-123" {
				t.Errorf("substituted %+v", c.NATS)
			}
		}},
		{name: "a number where a string goes stays a string", yaml: "nats:\n  user: api\n  password: 123456\n" + minimal, check: func(t *testing.T, c *Config) {
			if c.NATS.Password.Reveal() != "123456" {
				t.Errorf("password %q", c.NATS.Password.Reveal())
			}
		}},
		{name: "timeout", yaml: "timeout: 2m\n" + minimal, check: func(t *testing.T, c *Config) {
			if c.Timeout != 2*time.Minute {
				t.Errorf("timeout %v", c.Timeout)
			}
		}},
		{name: "unknown top key", yaml: "timout: 5s\n" + minimal, wantErr: "timout: line 1: unknown key"},
		{name: "unknown nested key", yaml: "auth:\n  key_file: x\n" + minimal, wantErr: "auth.key_file: line 2: unknown key"},
		{name: "unknown database key", yaml: "databases:\n  - id: ad-1\n    tagret: app\n", wantErr: "databases[0].tagret"},
		{name: "key twice", yaml: "listen: a:1\nlisten: b:2\n" + minimal, wantErr: "given twice"},
		{name: "unset variable", yaml: "nats:\n  password: ${NOPE}\n" + minimal, wantErr: "NOPE is not set"},
		{name: "bad duration", yaml: "timeout: ${PW}\n" + minimal, wantErr: "timeout: line 1: not a duration"},
		{name: "no databases", yaml: "listen: 127.0.0.1:1\n", wantErr: "databases: give at least one"},
		{name: "bad listen", yaml: "listen: nowhere\n" + minimal, wantErr: "listen: want host:port"},
		{name: "zero timeout", yaml: "timeout: 0s\n" + minimal, wantErr: "timeout: must be positive"},
		{name: "bad prefix", yaml: "nats:\n  prefix: a.b\n" + minimal, wantErr: "nats.prefix"},
		{name: "bad worker key", yaml: "nats:\n  worker_xkey: UABC\n" + minimal, wantErr: "nats.worker_xkey"},
		{name: "user without password", yaml: "nats:\n  user: api\n" + minimal, wantErr: "nats.password: must be given with nats.user"},
		{name: "bad database id", yaml: "databases:\n  - id: ad/1\n    target: app\n", wantErr: "databases[0].id"},
		{name: "bad target", yaml: "databases:\n  - id: ad-1\n    target: App\n", wantErr: "databases[0].target"},
		{name: "id twice", yaml: "databases:\n  - id: ad-1\n    target: a\n  - id: ad-1\n    target: b\n", wantErr: "also databases[0]"},
		{name: "target twice", yaml: "databases:\n  - id: ad-1\n    target: a\n  - id: ad-2\n    target: a\n", wantErr: "already serves databases[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := ParseConfig([]byte(tt.yaml), lookup)
			if err == nil {
				err = c.Validate()
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret-pw-123") {
					t.Errorf("the error shows a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestLoadKey(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := strings.Repeat("0123456789abcdef", 2) // 32 bytes
	tests := []struct {
		name, content string
		perm          os.FileMode
		want          string // the key; "" when refused
		wantErr       string
	}{
		{name: "32 bytes", content: key, perm: 0o600, want: key},
		{name: "trailing newlines removed", content: key + "\n\r\n\n", perm: 0o600, want: key},
		{name: "inner newline kept", content: key[:16] + "\n" + key[16:] + "\n", perm: 0o400, want: key[:16] + "\n" + key[16:]},
		{name: "31 bytes", content: key[:31] + "\n", perm: 0o600, wantErr: "holds 31 bytes"},
		{name: "readable by the group", content: key, perm: 0o640, wantErr: "chmod 600"},
		{name: "readable by others", content: key, perm: 0o604, wantErr: "chmod 600"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, string(rune('a'+i)))
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tt.perm); err != nil {
				t.Fatal(err)
			}
			got, err := LoadKey(p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), key[:10]) {
					t.Errorf("the error shows the key")
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("LoadKey = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := LoadKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing key file was accepted")
	}
}
