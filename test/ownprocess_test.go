package test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// ownProcessEnv names the variable that tells a test binary it runs one
// test in a process of its own (its value is the test's name).
const ownProcessEnv = "TEST_OWN_PROCESS_OF"

// inOwnProcess runs a test that needs the process's environment (t.Setenv)
// in a process of its own: called first thing, it returns true in that
// process, where the test then runs as written; elsewhere it runs this
// test binary again for the test alone (verbose, with the same -short and
// a timeout within the test's deadline), logs its output, fails or skips
// as the child did, and returns false, so that the caller returns at once.
// The parent is not parallel: the cluster test's three servers, started
// beside the parallel tests on a loaded machine, did not come up in 20 s
// (fresh-clone CI), so it runs before them.
func inOwnProcess(t *testing.T) bool {
	t.Helper()
	if os.Getenv(ownProcessEnv) == t.Name() {
		return true
	}
	args := []string{"-test.run=^" + t.Name() + "$", "-test.count=1", "-test.v"}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	if deadline, ok := t.Deadline(); ok {
		// The child times out first, with room for the parent to report
		// its output.
		args = append(args, "-test.timeout="+(time.Until(deadline)-10*time.Second).Truncate(time.Second).String())
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], args...)
	cmd.Env = append(os.Environ(), ownProcessEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s in its own process: %v\n%s", t.Name(), err, out)
	}
	if strings.Contains(string(out), "--- SKIP: "+t.Name()+" ") {
		t.Skipf("%s in its own process skipped:\n%s", t.Name(), out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()+" ") {
		t.Fatalf("%s in its own process did not pass:\n%s", t.Name(), out)
	}
	t.Logf("%s in its own process:\n%s", t.Name(), out)
	return false
}
