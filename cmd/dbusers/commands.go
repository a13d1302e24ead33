package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/dbusers/dbusers/client"
	"github.com/dbusers/dbusers/secret"
)

// userJSON is the --json output of create, update-password, delete and
// discard-old-password. User carries old_password_until while an old
// password works.
type userJSON struct {
	Target string         `json:"target"`
	User   client.Account `json:"user"`
	// Password is set only when the worker generated it.
	Password string `json:"password,omitempty"`
	JobID    string `json:"job_id,omitempty"`
}

// listJSON is the --json output of list; each user carries
// old_password_until while an old password works (the table has no column
// for it: it keeps the platform's three).
type listJSON struct {
	Target string           `json:"target"`
	Users  []client.Account `json:"users"`
}

func (a *app) listCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "database-users-list",
		Short: "List the users of the database",
		Long: `List the users of the target's database: the protected user the platform
created with the database, and the users made since. A protected user can be
neither changed nor deleted; a read-only user can only read.`,
		Example: "  dbusers --target my-app database-users-list",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			s, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			ctx, cancel := context.WithTimeout(ctx, a.timeout)
			defer cancel()
			accounts, err := s.c.ListUsers(ctx, a.target)
			if err != nil {
				return a.describe(err, "")
			}
			if a.json {
				return a.printJSON(listJSON{Target: a.target, Users: accounts})
			}
			return writeAccounts(a.out, accounts)
		},
	}
}

func (a *app) createCommand() *cobra.Command {
	var readOnly bool
	cmd := &cobra.Command{
		Use:   "database-users-create [--read-only] <username>",
		Short: "Create a user",
		Long: `Create a user with read and write access to the database, or read-only
access with --read-only.

The password is asked for twice, hidden. Leave it empty to have the worker
generate one (64 characters), which is shown once. A chosen password has 24 to
64 printable ASCII characters other than ' and " (no spaces). When stdin is
not a terminal, its first line is the password (an empty line: generate one),
without confirmation.

A username has 6 to 32 characters of a-z, 0-9 and _, and begins with a letter.`,
		Example: `  dbusers --target my-app database-users-create my_user
  dbusers --target my-app database-users-create --read-only my_user_ro
  echo "" | dbusers --target my-app database-users-create my_user   # generated password`,
		Args: oneUsername,
		RunE: func(cmd *cobra.Command, args []string) error {
			username := args[0]
			return a.withPassword(cmd.Context(), username, "created", func(ctx context.Context, c *client.Client, password secret.Secret, jobID string) (client.Credentials, error) {
				return c.CreateUser(ctx, a.target, client.CreateUserRequest{Username: username, ReadOnly: readOnly, Password: password, JobID: jobID})
			}, func(creds client.Credentials) string {
				if !creds.Password.IsZero() {
					return fmt.Sprintf("User \"%s\" created with password \"%s\".", username, creds.Password.Reveal())
				}
				return fmt.Sprintf("User \"%s\" created.", username)
			})
		},
	}
	cmd.Flags().BoolVar(&readOnly, "read-only", false, "grant read access only (SELECT, SHOW VIEW)")
	return cmd
}

func (a *app) updatePasswordCommand() *cobra.Command {
	var keepOld time.Duration
	cmd := &cobra.Command{
		Use:   "database-users-update-password [--keep-old DURATION] <username>",
		Short: "Set a new password for a user",
		Long: `Set a new password for a user. Its open sessions go on.

The password is asked for as in database-users-create: leave it empty to have
the worker generate one, which is shown once; from a non-terminal stdin, the
first line is the password. A protected user's password cannot be changed.

With --keep-old, the password in force before keeps working beside the new
one for that long (1m to 24h, e.g. 15m), so that the applications using the
user can move to the new password without failed logins; the command says
until when. database-users-discard-old-password ends it sooner. Without
--keep-old the old password stops at once, as does one kept earlier.`,
		Example: `  dbusers --target my-app database-users-update-password my_user
  dbusers --target my-app database-users-update-password --keep-old 15m my_user`,
		Args: oneUsername,
		RunE: func(cmd *cobra.Command, args []string) error {
			username := args[0]
			keep := cmd.Flags().Changed("keep-old")
			if err := checkKeepOld(keep, keepOld); err != nil {
				return err
			}
			return a.withPassword(cmd.Context(), username, "given a new password", func(ctx context.Context, c *client.Client, password secret.Secret, jobID string) (client.Credentials, error) {
				return c.ResetPassword(ctx, a.target, client.ResetPasswordRequest{Username: username, Password: password, KeepOldFor: keepOld, JobID: jobID})
			}, func(creds client.Credentials) string {
				msg := fmt.Sprintf("User \"%s\" password updated.", username)
				if !creds.Password.IsZero() {
					msg = fmt.Sprintf("User \"%s\" updated with password \"%s\".", username, creds.Password.Reveal())
				}
				if keep {
					msg += "\n" + oldPasswordSentence(username, creds.Account)
				}
				return msg
			})
		},
	}
	addKeepOldFlag(cmd, &keepOld, "keep the old password working beside the new one for this long (1m to 24h)")
	return cmd
}

func (a *app) deleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "database-users-delete <username>",
		Short: "Delete a user",
		Long: `Delete a user and end its open sessions. A protected user cannot be
deleted.`,
		Example: "  dbusers --target my-app database-users-delete my_user",
		Args:    oneUsername,
		RunE: func(cmd *cobra.Command, args []string) error {
			username := args[0]
			acc, _, err := a.accountJob(cmd.Context(), username, "deleted", func(ctx context.Context, c *client.Client, jobID string) (client.Account, error) {
				return c.DeleteUser(ctx, a.target, client.DeleteUserRequest{Username: username, JobID: jobID})
			})
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(userJSON{Target: a.target, User: acc})
			}
			_, err = fmt.Fprintf(a.out, "User %s has been deleted\n", username)
			return err
		},
	}
}

func (a *app) discardOldPasswordCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "database-users-discard-old-password <username>",
		Short: "End now the old password that --keep-old kept working",
		Long: `End now the old password that database-users-update-password --keep-old or
database-users-rotate --keep-old kept working beside the new one, instead of
at its time: from now on only the new password logs in. Sessions already
logged in go on. It succeeds also when the user has no old password. It asks
no confirmation: the user and its new password are untouched.`,
		Example: "  dbusers --target my-app database-users-discard-old-password my_user",
		Args:    oneUsername,
		RunE: func(cmd *cobra.Command, args []string) error {
			username := args[0]
			acc, jobID, err := a.accountJob(cmd.Context(), username, "left without an old password", func(ctx context.Context, c *client.Client, jobID string) (client.Account, error) {
				return c.DiscardOldPassword(ctx, a.target, client.DiscardOldPasswordRequest{Username: username, JobID: jobID})
			})
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(userJSON{Target: a.target, User: acc, JobID: jobID})
			}
			_, err = fmt.Fprintln(a.out, oldPasswordSentence(username, acc))
			return err
		},
	}
}

// addKeepOldFlag adds --keep-old to cmd.
func addKeepOldFlag(cmd *cobra.Command, d *time.Duration, usage string) {
	cmd.Flags().DurationVar(d, "keep-old", 0, usage)
}

// checkKeepOld refuses a --keep-old outside the worker's range before
// anything is sent: a usage error. given says the flag was on the command
// line; 0 given is refused too, since leaving the flag out says that.
func checkKeepOld(given bool, d time.Duration) error {
	if !given {
		return nil
	}
	if err := client.CheckKeepOld(d); err != nil {
		return usage(err, "Invalid --keep-old %v: the old password can be kept from 1m to 24h (leave --keep-old out to end it at once).", d)
	}
	return nil
}

// oldPasswordSentence says until when the old password of username works,
// as the worker reported acc.
func oldPasswordSentence(username string, acc client.Account) string {
	if acc.OldPasswordUntil == nil {
		return fmt.Sprintf("The old password of %s no longer works.", username)
	}
	return fmt.Sprintf("The old password of %s keeps working until %s.", username, formatUntil(*acc.OldPasswordUntil))
}

// formatUntil writes an old password's end time for people, in UTC to the
// second: "2026-12-03 14:05:00 UTC".
func formatUntil(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// accountJob runs a job on one user that answers with the account (delete,
// discard-old-password): check the username, make sure a worker answers,
// run the job with a new job id within the timeout. done says what the job
// does to the user, for a late success. It returns the account and the
// job's id, or an error ready for the command to return.
func (a *app) accountJob(ctx context.Context, username, done string,
	do func(ctx context.Context, c *client.Client, jobID string) (client.Account, error),
) (client.Account, string, error) {
	if err := client.CheckUsername(username); err != nil {
		return client.Account{}, "", a.describe(err, username)
	}
	s, err := a.connect(ctx)
	if err != nil {
		return client.Account{}, "", err
	}
	defer s.close()
	wctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	jobID := newJobID()
	acc, err := do(wctx, s.c, jobID)
	if errors.Is(err, client.ErrNoResult) {
		return client.Account{}, "", a.notDone(ctx, s, err, jobID, username, change{op: done})
	}
	if err != nil {
		return client.Account{}, "", a.describe(err, username)
	}
	return acc, jobID, nil
}

// withPassword runs create or update-password: check the username, make
// sure a worker answers, get the password, run the job, print the outcome.
// done says what the job does to the user, for a late success.
func (a *app) withPassword(ctx context.Context, username, done string,
	do func(ctx context.Context, c *client.Client, password secret.Secret, jobID string) (client.Credentials, error),
	message func(client.Credentials) string,
) error {
	if err := client.CheckUsername(username); err != nil {
		return a.describe(err, username)
	}
	s, err := a.connect(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	password, err := a.readPassword()
	if err != nil {
		return err
	}
	// The wait for the worker starts after the prompt.
	wctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	jobID := newJobID()
	creds, err := do(wctx, s.c, secret.New(password), jobID)
	if errors.Is(err, client.ErrNoResult) {
		return a.notDone(ctx, s, err, jobID, username, change{op: done, password: password == ""})
	}
	if err != nil {
		return a.describe(err, username)
	}
	if a.json {
		return a.printJSON(userJSON{Target: a.target, User: creds.Account, Password: creds.Password.Reveal(), JobID: creds.JobID})
	}
	_, err = fmt.Fprintln(a.out, message(creds))
	return err
}

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// noArgs refuses positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q: %s takes none", args, cmd.Name())
	}
	return nil
}

// oneUsername requires exactly one <username> argument.
func oneUsername(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("expected one <username> argument, got %d", len(args))
	}
	return nil
}
