package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// CreateUserRequest describes an account to create.
type CreateUserRequest struct {
	// Username must match ^[a-z][a-z0-9_]{5,31}$ and not be reserved.
	Username string
	// ReadOnly grants SELECT and SHOW VIEW only; otherwise the account gets
	// ALL PRIVILEGES on the target's database, like its protected user.
	ReadOnly bool
	// Password is a password the caller chose (24 to 64 printable ASCII
	// characters other than ' and "); it is sealed to the worker. Empty:
	// the worker generates one.
	Password secret.Secret
	// JobID is the job's idempotency key (^[A-Za-z0-9_-]{1,64}$). Empty: a
	// random one. Repeating a call with the same JobID after a crash or a
	// timeout never applies the job twice: it returns the job's result. A
	// password the worker generated for the earlier call was sealed to that
	// call's one-time key, so the repeat returns ErrSecretGone instead: the
	// account is in the state the result says, with an unknown password.
	JobID string
}

// ResetPasswordRequest describes a password reset.
type ResetPasswordRequest struct {
	// Username is the account whose password changes.
	Username string
	// Password is a chosen password, as in CreateUserRequest. Empty: the
	// worker generates one.
	Password secret.Secret
	// KeepOldFor, when not 0, keeps the password in force before the reset
	// working beside the new one for that long (1 minute to 24 hours,
	// measured from the job's completion), so that running applications
	// can move to the new one without downtime; the result's
	// Account.OldPasswordUntil says until when. DiscardOldPassword ends it
	// sooner. 0: the old password stops at once, and any old password kept
	// by an earlier reset is dropped too.
	KeepOldFor time.Duration
	// JobID is the job's idempotency key, as in CreateUserRequest.
	JobID string
}

// DiscardOldPasswordRequest names an account whose old password, kept by
// a reset with KeepOldFor, must stop working now.
type DiscardOldPasswordRequest struct {
	// Username is the account.
	Username string
	// JobID is the job's idempotency key, as in CreateUserRequest.
	JobID string
}

// DeleteUserRequest describes an account to delete.
type DeleteUserRequest struct {
	// Username is the account to drop; its open sessions are ended too.
	Username string
	// JobID is the job's idempotency key, as in CreateUserRequest.
	JobID string
}

// Credentials is the outcome of a create or a reset.
type Credentials struct {
	// Account is the account as the worker reports it after the job;
	// Account.OldPasswordUntil is set while the old password still works
	// (a reset with KeepOldFor).
	Account Account
	// Password is the password the worker generated, read from the vault
	// once; empty when the caller chose the password. It is shown nowhere
	// else: keep it now or reset it again. It prints as "[redacted]";
	// Reveal gives the value.
	Password secret.Secret
	// JobID is the job's id.
	JobID string
}

// CreateUser creates an account on target. With no Password in req, the
// worker generates one and it is returned in Credentials.Password.
//
// Errors: *Error for the worker's answers (ErrUserExists,
// ErrInvalidUsername, ErrInvalidPassword, ErrUnknownTarget, …), and
// ErrNoWorker, ErrNoResult, ErrSecretGone, ErrSecretUnread for the client's own failures.
func (c *Client) CreateUser(ctx context.Context, target string, req CreateUserRequest) (Credentials, error) {
	readOnly := req.ReadOnly
	return c.withPassword(ctx, target, wire.OpCreate, req.JobID, req.Username, req.Password, &readOnly, 0)
}

// ResetPassword sets a new password for an account of target, the chosen
// one of req or, without one, one the worker generates (returned in
// Credentials.Password). Open sessions of the account go on. With
// req.KeepOldFor the old password keeps working beside the new one until
// Credentials.Account.OldPasswordUntil.
//
// Errors as CreateUser's, with ErrUserNotFound, ErrProtectedUser and
// ErrForeignUser for accounts the worker does not touch. A KeepOldFor
// outside 1 minute to 24 hours is an *Error with code invalid_job (see
// CheckKeepOld), and nothing is sent.
func (c *Client) ResetPassword(ctx context.Context, target string, req ResetPasswordRequest) (Credentials, error) {
	return c.withPassword(ctx, target, wire.OpResetPassword, req.JobID, req.Username, req.Password, nil, req.KeepOldFor)
}

// DeleteUser drops an account of target and ends its open sessions. It
// returns the account as it was.
//
// Errors: *Error (ErrUserNotFound, ErrProtectedUser, ErrForeignUser, …),
// ErrNoWorker, ErrNoResult.
func (c *Client) DeleteUser(ctx context.Context, target string, req DeleteUserRequest) (Account, error) {
	return c.accountJob(ctx, target, wire.OpDelete, req.JobID, req.Username)
}

// DiscardOldPassword ends now the old password that a reset with
// KeepOldFor kept working for an account of target, instead of at its
// OldPasswordUntil. It succeeds also when the account has no old password.
// It returns the account as the worker reports it after the job (without
// OldPasswordUntil).
//
// Errors: *Error (ErrUserNotFound, ErrProtectedUser, ErrForeignUser, …),
// ErrNoWorker, ErrNoResult.
func (c *Client) DiscardOldPassword(ctx context.Context, target string, req DiscardOldPasswordRequest) (Account, error) {
	return c.accountJob(ctx, target, wire.OpDiscardOldPassword, req.JobID, req.Username)
}

// accountJob runs a job op on username's account whose body is the id and
// the username alone (delete, discard_old_password), and returns the
// account the worker answers.
func (c *Client) accountJob(ctx context.Context, target string, op wire.Op, jobID, username string) (Account, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	id, err := c.prepare(target, jobID, username, secret.Secret{}, 0)
	if err != nil {
		return Account{}, err
	}
	res, _, err := c.run(ctx, target, op, jobBody{ID: id, Username: username})
	if err != nil {
		return Account{}, err
	}
	return account(res.User, username), nil
}

// ListUsers returns every account that belongs to target, sorted by
// username, the protected users included. It follows the worker's cursor
// through every page (WithListPageSize sets the page size); the context
// bounds the whole listing.
func (c *Client) ListUsers(ctx context.Context, target string) ([]Account, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	if err := CheckTarget(target); err != nil {
		return nil, err
	}
	accounts := []Account{}
	after := ""
	for {
		res, _, err := c.run(ctx, target, wire.OpList, jobBody{ID: newJobID(), After: after, Limit: c.pageSize})
		if err != nil {
			return nil, err
		}
		for _, u := range res.Users {
			accounts = append(accounts, Account(u))
		}
		if res.Next == "" {
			return accounts, nil
		}
		if res.Next == after {
			return nil, fmt.Errorf("client: list of target %q: the cursor did not move past %q", target, after)
		}
		after = res.Next
	}
}

// prepare checks what the client can check before sending, in the
// worker's order (invalid_job, then the username, then the password), and
// returns the job id to use. keepOld 0 is none.
func (c *Client) prepare(target, jobID, username string, password secret.Secret, keepOld time.Duration) (string, error) {
	if err := CheckTarget(target); err != nil {
		return "", err
	}
	if jobID == "" {
		jobID = newJobID()
	} else if err := checkJobID(jobID); err != nil {
		return "", err
	}
	if keepOld != 0 {
		if err := CheckKeepOld(keepOld); err != nil {
			return "", err
		}
	}
	if err := CheckUsername(username); err != nil {
		return "", err
	}
	if !password.IsZero() {
		if err := CheckPassword(password.Reveal()); err != nil {
			return "", err
		}
	}
	return jobID, nil
}

// withPassword runs a create or reset_password job: a fresh curve key, the
// chosen password sealed to the worker or a generated one taken from the
// vault. keepOld (reset_password only) is sent as keep_old_for when not 0.
func (c *Client) withPassword(ctx context.Context, target string, op wire.Op, jobID, username string, password secret.Secret, readOnly *bool, keepOld time.Duration) (Credentials, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	id, err := c.prepare(target, jobID, username, password, keepOld)
	if err != nil {
		return Credentials{}, err
	}
	workerKey, err := c.key(ctx)
	if err != nil {
		return Credentials{}, err
	}
	requester, err := nkeys.CreateCurveKeys()
	if err != nil {
		return Credentials{}, fmt.Errorf("client: curve key: %w", err)
	}
	replyKey, err := requester.PublicKey()
	if err != nil {
		return Credentials{}, fmt.Errorf("client: curve key: %w", err)
	}
	body := jobBody{ID: id, Username: username, ReadOnly: readOnly, ReplyKey: replyKey}
	if keepOld != 0 {
		body.KeepOldFor = wire.FormatKeepOld(keepOld)
	}
	if !password.IsZero() {
		if body.Password, err = wire.SealChosenPassword(requester, workerKey, id, password); err != nil {
			return Credentials{}, fmt.Errorf("client: seal the password: %w", err)
		}
	}
	res, repeated, err := c.run(ctx, target, op, body)
	if err != nil {
		if !password.IsZero() && errors.Is(err, ErrInvalidPassword) {
			// The seal may not have opened because the worker has a new
			// key: ask again next time.
			c.forgetKey(workerKey)
		}
		return Credentials{}, err
	}
	creds := Credentials{Account: account(res.User, username), JobID: id}
	if res.Secret == nil {
		if password.IsZero() {
			return Credentials{}, fmt.Errorf("client: job %s: the worker generated no password and the result names no vault entry", id)
		}
		return creds, nil
	}
	if repeated {
		// The stream held this job id already: the password, if still in
		// the vault, is sealed to the earlier call's one-time key.
		return Credentials{}, fmt.Errorf("client: job %s was sent before: %w (it was sealed to the earlier call's key)", id, ErrSecretGone)
	}
	if creds.Password, err = c.takeSecret(ctx, requester, workerKey, id, res.Secret); err != nil {
		return Credentials{}, err
	}
	return creds, nil
}

// account converts the result's account; a result without one (which the
// contract does not allow) still names the username.
func account(a *wire.Account, username string) Account {
	if a == nil {
		return Account{Username: username}
	}
	return Account(*a)
}

// openGenerated opens a generated password sealed by workerKey.
func openGenerated(requester nkeys.KeyPair, workerKey string, sealed []byte, jobID string) (secret.Secret, error) {
	pw, err := wire.OpenGeneratedPassword(requester, workerKey, sealed, jobID)
	if err != nil {
		return secret.Secret{}, fmt.Errorf("the sealed password does not open with the worker's key: %w", err)
	}
	return pw, nil
}
