package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/dbusers/dbusers/client"
	"github.com/dbusers/dbusers/secret"
)

// userJSON is the --json output of create, update-password and delete.
type userJSON struct {
	Target string         `json:"target"`
	User   client.Account `json:"user"`
	// Password is set only when the worker generated it.
	Password string `json:"password,omitempty"`
	JobID    string `json:"job_id,omitempty"`
}

// listJSON is the --json output of list.
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
	return &cobra.Command{
		Use:   "database-users-update-password <username>",
		Short: "Set a new password for a user",
		Long: `Set a new password for a user. Its open sessions go on.

The password is asked for as in database-users-create: leave it empty to have
the worker generate one, which is shown once; from a non-terminal stdin, the
first line is the password. A protected user's password cannot be changed.`,
		Example: "  dbusers --target my-app database-users-update-password my_user",
		Args:    oneUsername,
		RunE: func(cmd *cobra.Command, args []string) error {
			username := args[0]
			return a.withPassword(cmd.Context(), username, "given a new password", func(ctx context.Context, c *client.Client, password secret.Secret, jobID string) (client.Credentials, error) {
				return c.ResetPassword(ctx, a.target, client.ResetPasswordRequest{Username: username, Password: password, JobID: jobID})
			}, func(creds client.Credentials) string {
				if !creds.Password.IsZero() {
					return fmt.Sprintf("User \"%s\" updated with password \"%s\".", username, creds.Password.Reveal())
				}
				return fmt.Sprintf("User \"%s\" password updated.", username)
			})
		},
	}
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
			ctx := cmd.Context()
			username := args[0]
			if err := client.CheckUsername(username); err != nil {
				return a.describe(err, username)
			}
			s, err := a.connect(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			wctx, cancel := context.WithTimeout(ctx, a.timeout)
			defer cancel()
			jobID := newJobID()
			acc, err := s.c.DeleteUser(wctx, a.target, client.DeleteUserRequest{Username: username, JobID: jobID})
			if errors.Is(err, client.ErrNoResult) {
				return a.notDone(ctx, s, err, jobID, username, change{op: "deleted"})
			}
			if err != nil {
				return a.describe(err, username)
			}
			if a.json {
				return a.printJSON(userJSON{Target: a.target, User: acc})
			}
			_, err = fmt.Fprintf(a.out, "User %s has been deleted\n", username)
			return err
		},
	}
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
