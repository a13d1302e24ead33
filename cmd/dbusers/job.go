package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dbusers/dbusers/client"
	"github.com/dbusers/dbusers/wire"
)

// jobStateTimeout bounds the look at a job's state after its wait ended.
const jobStateTimeout = 3 * time.Second

// newJobID returns a job id for a command's job. The CLI picks it, not the
// client, so that a job without a result in time can be named and looked
// up later.
func newJobID() string { return "cli-" + rand.Text() }

// change is what a job does to its user, for the words of a late success.
type change struct {
	op       string // "created", "given a new password", "deleted"
	password bool   // the worker generates the password
}

// notDone words a job whose result did not come in time (or before an
// interrupt): what is known of it (queued, or taken by a worker that has
// not finished it), its id, what a late success means for a generated
// password, and how to see its result later. err is the client's error,
// wrapping client.ErrNoResult.
func (a *app) notDone(ctx context.Context, s *session, err error, jobID, username string, ch change) error {
	interrupted := errors.Is(err, context.Canceled)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jobStateTimeout)
	defer cancel()
	st, serr := s.c.JobStatus(sctx, a.target, jobID)
	if serr == nil && st.State == client.JobDone {
		// Answered just after the wait: the result is known, but a
		// generated password was sealed to the call that gave up.
		return a.printJob(st, nil)
	}
	var b strings.Builder
	if interrupted {
		b.WriteString("Interrupted before the worker answered.\n")
	} else {
		fmt.Fprintf(&b, "The worker did not answer within %v.\n", a.timeout)
	}
	b.WriteString(a.stateSentence(st, serr))
	if ch.password {
		fmt.Fprintf(&b, "\nIf it succeeds later, user %q is %s with a generated password that no one can read: set a new one then with database-users-update-password.", username, ch.op)
	} else {
		fmt.Fprintf(&b, "\nIf it succeeds later, user %q is %s.", username, ch.op)
	}
	fmt.Fprintf(&b, "\nSee its result with: dbusers --target %s database-users-job-result %s", a.target, jobID)
	f := &failure{msg: b.String(), cause: err, jobID: jobID, jobState: string(st.State), status: exitUnavailable, code: codeTimeout}
	if interrupted {
		f.status, f.code = exitInterrupted, codeInterrupted
	}
	return f
}

// stateSentence says where a job that has no result is.
func (a *app) stateSentence(st client.JobStatus, err error) string {
	switch {
	case err != nil:
		return fmt.Sprintf("Job %s was sent, but whether a worker took it is not known (%s).", st.ID, strings.TrimPrefix(err.Error(), "client: "))
	case st.State == client.JobTaken:
		return fmt.Sprintf("Job %s was taken by a worker that has not finished it: it is running, or being retried while the database does not answer (the worker's log says which).", st.ID)
	case st.State == client.JobQueued:
		return fmt.Sprintf("Job %s is queued: no worker has taken it yet. Is a worker running, and are earlier jobs of target %q stuck?", st.ID, a.target)
	}
	return fmt.Sprintf("Job %s was sent, but neither the jobs stream nor the results stream holds it now.", st.ID)
}

// jobJSON is the --json output of database-users-job-result.
type jobJSON struct {
	JobID  string          `json:"job_id"`
	Target string          `json:"target"`
	State  client.JobState `json:"state"`
	Op     string          `json:"op,omitempty"`
	// The rest is set for a done job.
	User  *client.Account  `json:"user,omitempty"`
	Users []client.Account `json:"users,omitempty"`
	Error *struct {
		Code    client.Code `json:"code"`
		Message string      `json:"message"`
	} `json:"error,omitempty"`
	// GeneratedPasswordUnreadable: the job set a generated password that
	// only the command that sent it could read.
	GeneratedPasswordUnreadable bool       `json:"generated_password_unreadable,omitempty"`
	Attempts                    int        `json:"attempts,omitempty"`
	CompletedAt                 *time.Time `json:"completed_at,omitempty"`
}

func (a *app) jobResultCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "database-users-job-result <job-id>",
		Short: "Show what became of a job",
		Long: `Show what became of a job by its id, as a command that did not get its result
in time prints it: done (with its result), taken by a worker that has not
finished it (running, or retried while the database does not answer), or
queued. It reads the worker's streams and needs no worker to answer.

A generated password is never shown here: only the command that sent the job
could read it. Set a new one with database-users-update-password.

The exit status is that of the job's outcome: 0 when it succeeded, 6 when it
succeeded with a generated password (which cannot be read now), the status of
its error when it failed, 5 while it is queued or taken, 4 when no job of that
id is known (results are kept for the worker's results.max_age).`,
		Example: "  dbusers --target my-app database-users-job-result cli-5KQ3LZ7Q2B4C6D7E8F9G0H1J2K",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("expected one <job-id> argument, got %d", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.dial()
			if err != nil {
				return err
			}
			defer s.close()
			ctx, cancel := context.WithTimeout(cmd.Context(), a.timeout)
			defer cancel()
			st, err := s.c.JobStatus(ctx, a.target, args[0])
			if _, ok := errors.AsType[*client.Error](err); ok {
				return usage(err, "%s", a.describe(err, "").Error())
			}
			if err != nil && !errors.Is(err, client.ErrJobStateUnread) {
				return a.describe(err, "")
			}
			return a.printJob(st, err)
		},
	}
}

// printJob prints a job's state and returns the error whose exit status
// is the job's outcome (nil for a success).
func (a *app) printJob(st client.JobStatus, stateErr error) error {
	if stateErr != nil {
		return fail(stateErr, "Job %s has no stored result, and whether it is queued or taken is not known: %s.",
			st.ID, strings.TrimPrefix(stateErr.Error(), "client: "))
	}
	if st.State == client.JobUnknown {
		return &failure{msg: fmt.Sprintf("No job %s is known for target %q: it is neither queued nor answered within the worker's results.max_age.", st.ID, a.target),
			status: exitNotFound, code: codeJobNotFound, jobID: st.ID, jobState: string(st.State)}
	}
	if a.json {
		out := jobJSON{JobID: st.ID, Target: st.Target, State: st.State, Op: st.Op}
		if r := st.Result; r != nil {
			out.User, out.Users, out.Attempts, out.CompletedAt = r.Account, r.Users, r.Attempts, &r.CompletedAt
			out.GeneratedPasswordUnreadable = r.GeneratedPassword
			if r.Err != nil {
				out.Error = &struct {
					Code    client.Code `json:"code"`
					Message string      `json:"message"`
				}{r.Err.Code, r.Err.Message}
			}
		}
		if err := a.printJSON(out); err != nil {
			return err
		}
	}
	var err error
	switch {
	case st.State == client.JobDone:
		username := ""
		if st.Result.Account != nil {
			username = st.Result.Account.Username
		}
		err = a.describeResult(st, username)
	default:
		err = &failure{msg: a.stateSentence(st, nil), status: exitUnavailable, code: "job_pending", jobID: st.ID, jobState: string(st.State)}
	}
	if a.json && err != nil {
		// The job is on stdout; its outcome is the exit status alone.
		return &quiet{err}
	}
	return err
}

// describeResult words a done job's result: its error, or what it did.
// A success prints its sentence and returns nil, except that a generated
// password that no one can read now is a failure with exitPasswordUnread
// when the command was the one that sent the job (username given).
func (a *app) describeResult(st client.JobStatus, username string) error {
	r := st.Result
	if r.Err != nil {
		msg := a.describeCode(r.Err, username)
		if username == "" && aboutUser(r.Err.Code) {
			// A failed job's result names no user: the worker's words.
			msg = fmt.Sprintf("%s: %s", r.Err.Code, sentence(r.Err.Message))
		}
		return &failure{msg: fmt.Sprintf("Job %s failed after %s: %s", st.ID, attempts(r.Attempts), msg), cause: r.Err, jobID: st.ID, jobState: string(st.State)}
	}
	what := st.Op
	if r.Account != nil {
		what = fmt.Sprintf("%s of user %q", st.Op, r.Account.Username)
	}
	msg := fmt.Sprintf("Job %s (%s) succeeded at %s after %s.", st.ID, what, r.CompletedAt.Format(time.RFC3339), attempts(r.Attempts))
	// What the job did to the old password, in the past tense: it may have
	// ended since.
	if acc := r.Account; acc != nil && acc.OldPasswordUntil != nil {
		msg += fmt.Sprintf("\nIt kept the old password of %s working until %s.", acc.Username, formatUntil(*acc.OldPasswordUntil))
	} else if acc != nil && st.Op == string(wire.OpDiscardOldPassword) {
		msg += fmt.Sprintf("\nIt ended the old password of %s.", acc.Username)
	}
	if r.GeneratedPassword {
		msg += "\nIts generated password can no longer be read (only the command that sent the job could): set a new one with database-users-update-password."
		return &failure{msg: msg, status: exitPasswordUnread, code: codePasswordUnread, jobID: st.ID, jobState: string(st.State)}
	}
	if !a.json {
		_, err := fmt.Fprintln(a.out, msg)
		return err
	}
	return nil
}

// aboutUser reports whether describeCode words code with the username.
func aboutUser(code client.Code) bool {
	switch code {
	case client.CodeUserExists, client.CodeUserNotFound, client.CodeProtectedUser, client.CodeForeignUser:
		return true
	}
	return false
}

func attempts(n int) string {
	if n == 1 {
		return "1 attempt"
	}
	return fmt.Sprintf("%d attempts", n)
}

// quiet is a failure whose words were printed already (a --json job on
// stdout): run prints nothing more, and exits with its status.
type quiet struct{ err error }

func (q *quiet) Error() string { return q.err.Error() }
func (q *quiet) Unwrap() error { return q.err }
