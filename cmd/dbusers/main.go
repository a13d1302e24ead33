// Command dbusers manages the users of a managed MySQL database through
// the dbusers worker, with the platform's commands: database-users-list,
// database-users-create, database-users-update-password,
// database-users-delete, database-users-rotate for bulk rotation and
// database-users-discard-old-password to end an old password that an
// update or a rotation with --keep-old kept working.
//
// It talks to the worker over NATS with the client package. Global flags:
// --nats-url (DBUSERS_NATS_URL, default nats://127.0.0.1:4222, or the one
// that make run wrote to data/cli-context.json), --creds
// (DBUSERS_CREDS), --target (DBUSERS_TARGET), --prefix (DBUSERS_PREFIX),
// --worker-xkey (DBUSERS_WORKER_XKEY), --timeout and --json. Errors go to
// stderr in plain words, with exit status 1. Run "dbusers --help" for more.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, stdio{
		in:          os.Stdin,
		out:         os.Stdout,
		err:         os.Stderr,
		term:        stdinTerminal(os.Stderr),
		stderrIsTTY: term.IsTerminal(int(os.Stderr.Fd())),
		contextPath: contextFile,
	})
	stop()
	os.Exit(code)
}

// tty reads hidden input from the terminal on stdin.
type tty struct {
	fd   int
	echo io.Writer // where the newline the user typed is echoed
}

// stdinTerminal returns the terminal on stdin, or nil when stdin is not one.
func stdinTerminal(echo io.Writer) terminal {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil
	}
	return tty{fd: fd, echo: echo}
}

// ReadPassword reads one line without echoing it. An interrupt while it
// waits restores the terminal's echo before the process exits, which
// term.ReadPassword alone would leave off.
func (t tty) ReadPassword() (string, error) {
	state, err := term.GetState(t.fd)
	if err != nil {
		return "", fmt.Errorf("terminal state: %w", err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-sigs:
			_ = term.Restore(t.fd, state)
			fmt.Fprintln(t.echo)
			os.Exit(130)
		case <-done:
		}
	}()
	pw, err := term.ReadPassword(t.fd)
	fmt.Fprintln(t.echo) // the Enter key, which was not echoed
	if err != nil {
		return "", fmt.Errorf("read the password: %w", err)
	}
	return string(pw), nil
}
