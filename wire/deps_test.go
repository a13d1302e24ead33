package wire_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWireStaysALeaf: the wire package builds on the standard library,
// nkeys and the secret package only, and the Go client on the wire
// package, not on the worker: a program that sends jobs must not build in
// the MySQL driver, the worker's logger or its retry library.
func TestWireStaysALeaf(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go tool is not on PATH")
	}
	cases := []struct {
		pkg     string
		allowed []string // module or package path prefixes besides the standard library
	}{
		{"github.com/dbusers/dbusers/wire", []string{"github.com/dbusers/dbusers/wire", "github.com/dbusers/dbusers/secret",
			"github.com/nats-io/nkeys", "golang.org/x/crypto/", "golang.org/x/sys/"}},
		{"github.com/dbusers/dbusers/client", []string{"github.com/dbusers/dbusers/client", "github.com/dbusers/dbusers/wire",
			"github.com/dbusers/dbusers/secret",
			"github.com/nats-io/", "golang.org/x/crypto/", "golang.org/x/sys/", "github.com/klauspost/compress/"}},
	}
	for _, tc := range cases {
		out, err := exec.Command("go", "list", "-deps", tc.pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", tc.pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			first, _, _ := strings.Cut(dep, "/")
			if !strings.Contains(first, ".") {
				continue // the standard library
			}
			ok := false
			for _, a := range tc.allowed {
				ok = ok || strings.HasPrefix(dep, a)
			}
			if !ok {
				t.Errorf("%s depends on %s", tc.pkg, dep)
			}
		}
	}
}
