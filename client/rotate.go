package client

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dbusers/dbusers/secret"
)

// DefaultRotateConcurrency is the number of jobs RotatePasswords keeps in
// flight when RotateOptions.Concurrency is 0.
const DefaultRotateConcurrency = 8

// RotateOptions tune RotatePasswords.
type RotateOptions struct {
	// Concurrency bounds the jobs in flight at once (default 8). The worker
	// applies one target's jobs one at a time in any case; more in flight
	// only hides the round trips.
	Concurrency int
	// Timeout bounds each account's job; 0 leaves only ctx (and, when it
	// has no deadline, the client's default timeout, per account).
	Timeout time.Duration
	// KeepOldFor, when not 0, keeps each account's old password working
	// beside the new one for that long, as ResetPasswordRequest.KeepOldFor
	// (1 minute to 24 hours): the applications that use the accounts have
	// that long to move to the new passwords. Each result's
	// Account.OldPasswordUntil says until when.
	KeepOldFor time.Duration
	// OnResult, when set, is called with each account's result as soon as
	// it is known, before Progress. Callers that must not lose a new
	// password if they crash later (it was read from the vault once) store
	// it here. Calls are never concurrent.
	OnResult func(RotateResult)
	// Progress, when set, is called after each account with the number
	// done so far and the total. Calls are never concurrent, and done
	// increases by one each time.
	Progress func(done, total int)
}

// RotateResult is the outcome of one account of RotatePasswords.
type RotateResult struct {
	// Username is the account, as given.
	Username string
	// Account is the account as the worker reports it; zero on failure.
	// Account.OldPasswordUntil is set when the old password was kept
	// (RotateOptions.KeepOldFor).
	Account Account
	// Password is the new, generated password; empty on failure.
	Password secret.Secret
	// JobID is the account's job id (repeat it with ResetPassword to learn
	// the outcome of an account that failed with ErrNoResult); "" when the
	// job was never sent.
	JobID string
	// Err is nil on success. Otherwise it is an *Error answered by the
	// worker (errors.Is(Err, ErrProtectedUser), ErrUserNotFound, …) or a
	// failure of the client (ErrNoResult, ErrSecretGone, ErrSecretUnread, a context error).
	Err error
}

// RotatePasswords gives each account of usernames a new password that the
// worker generates, as one reset_password job per account with at most
// opts.Concurrency jobs in flight. It returns one result per username, in
// the order given; one account's failure does not stop the others. A
// protected account fails with ErrProtectedUser and is left unchanged.
//
// The error is non-nil only when nothing could start: an invalid target,
// a KeepOldFor outside its range (an *Error with code invalid_job, see
// CheckKeepOld), a username given twice, or no worker key. When ctx ends,
// the accounts not done yet fail with ctx's error.
func (c *Client) RotatePasswords(ctx context.Context, target string, usernames []string, opts RotateOptions) ([]RotateResult, error) {
	if err := CheckTarget(target); err != nil {
		return nil, err
	}
	if opts.KeepOldFor != 0 {
		if err := CheckKeepOld(opts.KeepOldFor); err != nil {
			return nil, err
		}
	}
	seen := make(map[string]bool, len(usernames))
	for _, u := range usernames {
		if seen[u] {
			return nil, fmt.Errorf("client: rotate: username %q is given twice", u)
		}
		seen[u] = true
	}
	n := opts.Concurrency
	if n <= 0 {
		n = DefaultRotateConcurrency
	}
	n = min(n, max(len(usernames), 1))
	// Ask the worker's key once, up front, so that a missing worker fails
	// the whole batch at once rather than every account.
	kctx, cancel := c.bound(ctx)
	_, err := c.key(kctx)
	cancel()
	if err != nil {
		return nil, err
	}

	results := make([]RotateResult, len(usernames))
	var (
		mu   sync.Mutex // serializes the callbacks
		done int
		wg   sync.WaitGroup
	)
	indexes := make(chan int)
	for range n {
		wg.Go(func() {
			for i := range indexes {
				r := c.rotateOne(ctx, target, usernames[i], opts)
				results[i] = r
				mu.Lock()
				done++
				if opts.OnResult != nil {
					opts.OnResult(r)
				}
				if opts.Progress != nil {
					opts.Progress(done, len(usernames))
				}
				mu.Unlock()
			}
		})
	}
	for i := range usernames {
		indexes <- i
	}
	close(indexes)
	wg.Wait()
	return results, nil
}

// rotateOne resets one account's password to a generated one.
func (c *Client) rotateOne(ctx context.Context, target, username string, opts RotateOptions) RotateResult {
	r := RotateResult{Username: username, JobID: newJobID()}
	if err := ctx.Err(); err != nil {
		r.Err = fmt.Errorf("client: rotate %s: not sent: %w", username, err)
		r.JobID = ""
		return r
	}
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	creds, err := c.ResetPassword(ctx, target, ResetPasswordRequest{Username: username, JobID: r.JobID, KeepOldFor: opts.KeepOldFor})
	if err != nil {
		r.Err = err
		return r
	}
	r.Account, r.Password = creds.Account, creds.Password
	return r
}
