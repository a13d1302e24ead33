package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStartupErrorsArePlainSentences: whatever the log format, an error in
// the configuration or at start-up is one sentence on stderr that names
// what is wrong, with exit status 2: no JSON log line, no stack trace.
func TestStartupErrorsArePlainSentences(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, yaml string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	typo := write("typo.yaml", "nats:\n  urll: nats://127.0.0.1:4222\ntargets: []\n")
	invalid := write("invalid.yaml", "targets:\n  - name: a\n    dsn: \"x\"\n    database: \"\"\n")
	// A NATS that refuses connections: the configuration is valid, the
	// start fails.
	unreachable := write("unreachable.yaml", "nats:\n  url: nats://127.0.0.1:1\n"+
		"vault:\n  xkey_seed_file: "+filepath.Join(dir, "worker.xk")+"\n"+
		"targets:\n  - name: a\n    dsn: \"u:p@tcp(127.0.0.1:1)/\"\n    database: x\n    protected_users: [a]\n")

	tests := []struct {
		name string
		args []string
		want []string // what the sentence must name
	}{
		{"unknown key", []string{"-config", typo}, []string{"configuration", "nats.urll", "line 2", "unknown key"}},
		{"invalid values", []string{"-config", invalid}, []string{"configuration", "targets[0].dsn", "targets[0].database"}},
		{"missing file", []string{"-config", filepath.Join(dir, "absent.yaml")}, []string{"configuration", "absent.yaml", "no such file"}},
		{"no -config", nil, []string{"-config FILE is required"}},
		{"bad -log-level", []string{"-config", typo, "-log-level", "loud"}, []string{"-log-level", "loud"}},
		{"start fails", []string{"-config", unreachable}, []string{"cannot start", "nats.url", "connect"}},
	}
	for _, tt := range tests {
		for _, format := range []string{"json", "console"} {
			t.Run(tt.name+"/"+format, func(t *testing.T) {
				t.Parallel()
				var stderr bytes.Buffer
				code := run(append([]string{"-log-format", format}, tt.args...), &stderr)
				if code != exitStartup {
					t.Errorf("exit status %d, want %d", code, exitStartup)
				}
				out := stderr.String()
				lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
				if len(lines) != 1 {
					t.Fatalf("%d lines on stderr, want one sentence:\n%s", len(lines), out)
				}
				line := lines[0]
				if !strings.HasPrefix(line, "worker: ") || !strings.HasSuffix(line, ".") || strings.HasSuffix(line, "..") {
					t.Errorf("not one sentence %q", line)
				}
				if json.Valid([]byte(line)) {
					t.Errorf("stderr is a JSON log line: %q", line)
				}
				for _, bad := range []string{`"level"`, "\t", "stacktrace", "main.run", ".go:"} {
					if strings.Contains(line, bad) {
						t.Errorf("stderr holds %q, as a log line or stack trace would: %q", bad, line)
					}
				}
				for _, w := range tt.want {
					if !strings.Contains(line, w) {
						t.Errorf("stderr %q does not name %q", line, w)
					}
				}
				if strings.Contains(line, "u:p@") {
					t.Errorf("stderr shows the DSN's password: %q", line)
				}
			})
		}
	}
}
