package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/dbusers/dbusers/client"
)

// credentialLine is one line of rotate's --out file.
type credentialLine struct {
	Target    string `json:"target"`
	Username  string `json:"username"`
	Password  string `json:"password"`
	ReadOnly  bool   `json:"read_only"`
	JobID     string `json:"job_id"`
	RotatedAt string `json:"rotated_at"`
	// OldPasswordUntil is when the user's old password stops working, with
	// --keep-old.
	OldPasswordUntil *time.Time `json:"old_password_until,omitempty"`
}

// rotateJSON is the --json output of rotate.
type rotateJSON struct {
	Target  string         `json:"target"`
	Out     string         `json:"out"`
	Rotated int            `json:"rotated"`
	Skipped []string       `json:"skipped"`
	Failed  []rotateFailed `json:"failed"`
	// OldPasswordUntil spans the end times of the rotated users' old
	// passwords, with --keep-old; each user's is in the --out file.
	OldPasswordUntil *untilSpan `json:"old_password_until,omitempty"`
}

// untilSpan is the first and the last of the old passwords' end times.
type untilSpan struct {
	Earliest time.Time `json:"earliest"`
	Latest   time.Time `json:"latest"`
}

type rotateFailed struct {
	Username string `json:"username"`
	Error    string `json:"error"`
}

// rotateFlags are the flags of database-users-rotate.
type rotateFlags struct {
	all         bool
	out         string
	concurrency int
	// keepOld is --keep-old; keepOldGiven says it was on the command line.
	keepOld      time.Duration
	keepOldGiven bool
}

func (a *app) rotateCommand() *cobra.Command {
	var f rotateFlags
	cmd := &cobra.Command{
		Use:   "database-users-rotate [--all | <username>...] [--keep-old DURATION] --out FILE",
		Short: "Give users new generated passwords, in bulk",
		Long: `Give each named user, or with --all every user of the database, a new
password that the worker generates.

The new credentials are written to FILE only, never to the terminal: one JSON
object per line, {"target","username","password","read_only","job_id",
"rotated_at"}, each line written as soon as its password is known. FILE is
created with mode 0600 and must not exist yet: an existing file is never
written over, so that no earlier credentials are lost.

With --keep-old, each user's old password keeps working beside the new one
for that long (1m to 24h), so that the applications using the users can move
to the new passwords without failed logins. Each line of FILE then has
"old_password_until", and the summary says until when.
database-users-discard-old-password ends one sooner.

Protected users are skipped and reported. One user's failure does not stop
the others. On a terminal, a progress bar on stderr shows the count, the rate
and the time left. The command ends with a summary (rotated, skipped,
failed), and exits with status 1 when any user failed (docs/cli.md lists the
exit statuses). --timeout bounds each user's job.`,
		Example: `  dbusers --target my-app database-users-rotate --all --out new-passwords.jsonl
  dbusers --target my-app database-users-rotate my_user my_user_ro --out new-passwords.jsonl
  dbusers --target my-app database-users-rotate --all --keep-old 15m --out new-passwords.jsonl`,
		RunE: func(cmd *cobra.Command, args []string) error {
			f.keepOldGiven = cmd.Flags().Changed("keep-old")
			return a.rotate(cmd.Context(), f, args)
		},
	}
	cmd.Flags().BoolVar(&f.all, "all", false, "rotate every user of the database but the protected ones")
	cmd.Flags().StringVar(&f.out, "out", "", "new file to write the credentials to (JSON lines, mode 0600); required")
	cmd.Flags().IntVar(&f.concurrency, "concurrency", client.DefaultRotateConcurrency, "jobs in flight at once")
	addKeepOldFlag(cmd, &f.keepOld, "keep each old password working beside the new one for this long (1m to 24h)")
	return cmd
}

func (a *app) rotate(ctx context.Context, f rotateFlags, usernames []string) error {
	switch {
	case f.all && len(usernames) > 0:
		return usagef("Give either --all or usernames, not both.")
	case !f.all && len(usernames) == 0:
		return usagef("Give the usernames to rotate, or --all for every user.")
	case f.out == "":
		return usagef("Give --out FILE: the new credentials are written there, never to the terminal.")
	case f.concurrency < 1:
		return usagef("Invalid --concurrency %d: it must be at least 1.", f.concurrency)
	}
	if err := checkKeepOld(f.keepOldGiven, f.keepOld); err != nil {
		return err
	}
	for _, u := range usernames {
		if err := client.CheckUsername(u); err != nil {
			return a.describe(err, u)
		}
	}
	if _, err := os.Lstat(f.out); err == nil {
		return usagef("%s already exists: give a new file (credentials are never written over an existing file).", f.out)
	}
	s, err := a.connect(ctx)
	if err != nil {
		return err
	}
	defer s.close()

	var skipped []string
	if f.all {
		lctx, cancel := context.WithTimeout(ctx, a.timeout)
		accounts, err := s.c.ListUsers(lctx, a.target)
		cancel()
		if err != nil {
			return a.describe(err, "")
		}
		for _, acc := range accounts {
			if acc.Protected {
				skipped = append(skipped, acc.Username)
			} else {
				usernames = append(usernames, acc.Username)
			}
		}
	}

	file, err := os.OpenFile(f.out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return usage(err, "%s already exists: give a new file (credentials are never written over an existing file).", f.out)
	}
	if err != nil {
		return fail(err, "Cannot create %s: %v.", f.out, err)
	}
	defer file.Close()
	out := json.NewEncoder(file)
	out.SetEscapeHTML(false)
	lost := map[string]error{} // rotated, but the line could not be written

	var bar *progressbar.ProgressBar
	if a.stderrIsTTY && len(usernames) > 0 {
		bar = newProgressBar(a, len(usernames))
	}
	results, err := s.c.RotatePasswords(ctx, a.target, usernames, client.RotateOptions{
		Concurrency: f.concurrency,
		Timeout:     a.timeout,
		KeepOldFor:  f.keepOld,
		OnResult: func(r client.RotateResult) {
			if r.Err != nil {
				return
			}
			line := credentialLine{Target: a.target, Username: r.Username, Password: r.Password.Reveal(),
				ReadOnly: r.Account.ReadOnly, JobID: r.JobID, RotatedAt: time.Now().UTC().Format(time.RFC3339),
				OldPasswordUntil: r.Account.OldPasswordUntil}
			if err := out.Encode(line); err != nil {
				lost[r.Username] = err
			}
		},
		Progress: func(done, _ int) {
			if bar != nil {
				_ = bar.Set(done)
			}
		},
	})
	if bar != nil {
		_ = bar.Finish()
	}
	if err != nil {
		return a.describe(err, "")
	}
	if err := file.Sync(); err != nil {
		return fail(err, "Cannot write %s: %v. Some new passwords may be lost: rotate again into a new file.", f.out, err)
	}
	if err := file.Close(); err != nil {
		return fail(err, "Cannot write %s: %v. Some new passwords may be lost: rotate again into a new file.", f.out, err)
	}
	return a.rotateSummary(f.out, results, skipped, lost)
}

// rotateSummary reports skipped and failed users on stderr, in the order
// given, and the counts on stdout; it fails when any user failed.
func (a *app) rotateSummary(out string, results []client.RotateResult, skipped []string, lost map[string]error) error {
	sum := rotateJSON{Target: a.target, Out: out, Skipped: []string{}, Failed: []rotateFailed{}}
	for _, u := range skipped {
		sum.Skipped = append(sum.Skipped, u)
		fmt.Fprintf(a.err, "Skipped: User \"%s\" is protected.\n", u)
	}
	notSent := 0 // the command was interrupted before their jobs were sent
	for _, r := range results {
		switch {
		case r.Err != nil && r.JobID == "":
			notSent++
			sum.Failed = append(sum.Failed, rotateFailed{Username: r.Username, Error: "not sent: interrupted"})
		case errors.Is(r.Err, client.ErrProtectedUser):
			sum.Skipped = append(sum.Skipped, r.Username)
			fmt.Fprintf(a.err, "Skipped: User \"%s\" is protected.\n", r.Username)
		case r.Err != nil:
			msg := a.describe(r.Err, r.Username).Error()
			sum.Failed = append(sum.Failed, rotateFailed{Username: r.Username, Error: msg})
			fmt.Fprintf(a.err, "Failed: %s\n", msg)
		case lost[r.Username] != nil:
			msg := fmt.Sprintf("User \"%s\" got a new password that could not be written to %s (%v): rotate it again.", r.Username, out, lost[r.Username])
			sum.Failed = append(sum.Failed, rotateFailed{Username: r.Username, Error: msg})
			fmt.Fprintf(a.err, "Failed: %s\n", msg)
		default:
			sum.Rotated++
			if r.Account.OldPasswordUntil != nil {
				sum.OldPasswordUntil = sum.OldPasswordUntil.add(*r.Account.OldPasswordUntil)
			}
		}
	}
	if notSent > 0 {
		fmt.Fprintf(a.err, "Interrupted: %d users were not sent, and keep their passwords.\n", notSent)
	}
	if a.json {
		if err := a.printJSON(sum); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(a.out, "Rotated: %d, skipped: %d, failed: %d\n", sum.Rotated, len(sum.Skipped), len(sum.Failed))
		if sum.Rotated > 0 {
			fmt.Fprintf(a.out, "New credentials are in %s\n", out)
		}
		if u := sum.OldPasswordUntil; u != nil {
			first, last := formatUntil(u.Earliest), formatUntil(u.Latest)
			if first == last {
				fmt.Fprintf(a.out, "The old passwords keep working until %s.\n", first)
			} else {
				fmt.Fprintf(a.out, "The old passwords keep working until %s at the earliest, %s at the latest; each user's time is in %s.\n", first, last, out)
			}
		}
	}
	if n := len(sum.Failed); n > 0 {
		return failf("%d of %d users could not be rotated.", n, len(results))
	}
	return nil
}

// add widens s to t; a nil s becomes [t, t].
func (s *untilSpan) add(t time.Time) *untilSpan {
	t = t.UTC()
	if s == nil {
		return &untilSpan{Earliest: t, Latest: t}
	}
	if t.Before(s.Earliest) {
		s.Earliest = t
	}
	if t.After(s.Latest) {
		s.Latest = t
	}
	return s
}

// newProgressBar shows rotate's progress on stderr: count, rate and time
// left.
func newProgressBar(a *app, total int) *progressbar.ProgressBar {
	return progressbar.NewOptions(total,
		progressbar.OptionSetWriter(a.err),
		progressbar.OptionSetDescription("Rotating"),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("users"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(a.err) }),
	)
}
