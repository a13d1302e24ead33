package test

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nkeys"

	"github.com/dbusers/dbusers/client"
	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/secret"
	"github.com/dbusers/dbusers/wire"
)

// newClient returns a client of the package under test on the env's
// connection, once the worker's info endpoint answers.
func newClient(t *testing.T, e *env, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(e.nc, opts...)
	if err != nil {
		t.Fatalf("client.New: %v", err)
	}
	waitForInfo(t, e)
	return c
}

// waitForInfo waits until the worker's info endpoint answers on the env's
// server. service.Start returns once the endpoint is subscribed on the
// worker's connection, which the server may register a moment later.
func waitForInfo(t *testing.T, e *env) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := e.nc.Request(prefix+".info", nil, time.Second); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("the worker's info endpoint does not answer: %v", err)
		}
	}
}

// clientCtx bounds one test step.
func clientCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// makeAccounts creates n accounts of f's database directly as root, the
// way the worker makes them ('u'@'%', ALL PRIVILEGES on the escaped
// database name), and returns their names, sorted.
func makeAccounts(t *testing.T, f *mysqltest.Fixture, prefix string, n int) []string {
	t.Helper()
	names := make([]string, n)
	for i := range names {
		names[i] = mysqltest.Username(prefix)
	}
	grant := "GRANT ALL PRIVILEGES ON `" + mysqltest.EscapePattern(f.Database) + "`.* TO ?@'%'"
	// A few connections at once: 500 accounts take a couple of seconds.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	work := make(chan string)
	for range 4 {
		wg.Go(func() {
			for u := range work {
				if _, err := f.Root.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", u, mysqltest.Password()); err != nil {
					errs <- err
					continue
				}
				if _, err := f.Root.Exec(grant, u); err != nil {
					errs <- err
				}
			}
		})
	}
	for _, u := range names {
		f.DropUserLater(u)
		work <- u
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create accounts: %v", err)
	}
	slices.Sort(names)
	return names
}

// loginError logs in once as user and returns the error of the login (nil
// when it worked). Unlike Fixture.Login it keeps no connection open, so
// that hundreds of logins stay under max_connections.
func loginError(ctx context.Context, f *mysqltest.Fixture, user, password string) error {
	cfg, err := mysql.ParseDSN(f.DSN(user, password))
	if err != nil {
		return err
	}
	cfg.Timeout = 5 * time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	return db.PingContext(ctx)
}

// checkLogins logs in with every username → password of creds, a few at a
// time, and fails the test for each that does not work.
func checkLogins(t *testing.T, f *mysqltest.Fixture, creds map[string]string) {
	t.Helper()
	type login struct{ user, password string }
	work := make(chan login)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed []string
	)
	for range 8 {
		wg.Go(func() {
			for l := range work {
				if err := loginError(t.Context(), f, l.user, l.password); err != nil {
					mu.Lock()
					failed = append(failed, l.user+": "+err.Error())
					mu.Unlock()
				}
			}
		})
	}
	for u, pw := range creds {
		work <- login{u, pw}
	}
	close(work)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d logins failed, e.g. %s", len(failed), len(creds), failed[0])
	}
}

// TestClientUserLifecycle: create, reset and delete with chosen and
// generated passwords; each password logs in, each generated one was
// purged from the vault.
func TestClientUserLifecycle(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, nil)
	c := newClient(t, e)
	kv, err := e.js.KeyValue(t.Context(), "DBUSERS_VAULT")
	if err != nil {
		t.Fatal(err)
	}
	// wantPassword checks the password the call returned and logs in
	// with the one in force.
	wantPassword := func(t *testing.T, user, chosen string, creds client.Credentials) {
		t.Helper()
		inForce := chosen
		if chosen == "" {
			if creds.Password.Len() != 64 {
				t.Fatalf("generated password of %d characters, want 64", creds.Password.Len())
			}
			if _, err := kv.Get(t.Context(), wire.VaultKey("app", creds.JobID)); !isKeyGone(err) {
				t.Fatalf("vault entry of job %s still readable: %v", creds.JobID, err)
			}
			inForce = creds.Password.Reveal()
		} else if !creds.Password.IsZero() {
			t.Fatalf("a chosen password came back as generated")
		}
		if err := loginError(t.Context(), f, user, inForce); err != nil {
			t.Fatalf("login as %s: %v", user, err)
		}
	}

	tests := []struct {
		name     string
		readOnly bool
		password string
	}{
		{"read-write, generated", false, ""},
		{"read-only, generated", true, ""},
		{"read-write, chosen", false, "Chosen-password-" + mysqltest.Token(16)},
		{"read-only, chosen with a backslash", true, `Chosen\password-` + mysqltest.Token(16)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			user := mysqltest.Username("lc_")
			f.DropUserLater(user)
			creds, err := c.CreateUser(clientCtx(t), "app", client.CreateUserRequest{Username: user, ReadOnly: tt.readOnly, Password: secret.New(tt.password)})
			if err != nil {
				t.Fatalf("CreateUser: %v", err)
			}
			if want := (client.Account{Username: user, ReadOnly: tt.readOnly}); creds.Account != want {
				t.Fatalf("account %+v, want %+v", creds.Account, want)
			}
			wantPassword(t, user, tt.password, creds)

			for _, chosen := range []string{"", "Reset-password-" + mysqltest.Token(16)} {
				creds, err := c.ResetPassword(clientCtx(t), "app", client.ResetPasswordRequest{Username: user, Password: secret.New(chosen)})
				if err != nil {
					t.Fatalf("ResetPassword: %v", err)
				}
				wantPassword(t, user, chosen, creds)
			}

			acc, err := c.DeleteUser(clientCtx(t), "app", client.DeleteUserRequest{Username: user})
			if err != nil || acc.Username != user {
				t.Fatalf("DeleteUser = %+v, %v", acc, err)
			}
			if f.AccountExists(user) {
				t.Fatalf("%s still exists", user)
			}
		})
	}
}

// TestClientListFollowsCursor: ListUsers returns every page, whatever the
// page size.
func TestClientListFollowsCursor(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, nil)
	names := makeAccounts(t, f, "pg_", 7)
	want := []client.Account{{Username: f.Protected, Protected: true}}
	for _, n := range names {
		want = append(want, client.Account{Username: n})
	}
	slices.SortFunc(want, func(a, b client.Account) int { return strings.Compare(a.Username, b.Username) })
	for _, size := range []int{1, 2, 8, 1000} {
		c := newClient(t, e, client.WithListPageSize(size))
		got, err := c.ListUsers(clientCtx(t), "app")
		if err != nil {
			t.Fatalf("page size %d: %v", size, err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("page size %d: got %+v\nwant %+v", size, got, want)
		}
	}
}

// TestClientTypedErrors: each contract code comes back as an *Error that
// errors.Is matches with its sentinel.
func TestClientTypedErrors(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	other := mysqltest.NewFixture(t, mysqltest.Options{})
	dead := deadTarget(t, "dead")
	e := startWorker(t, []config.Target{target("app", f), dead},
		func(c *config.Config) { c.Retry.Budget = 2 * time.Second })
	c := newClient(t, e)

	existing := makeAccounts(t, f, "ex_", 1)[0]
	foreign := makeAccounts(t, other, "fo_", 1)[0] // belongs to another database
	// A pinned key that is not the worker's: the worker cannot open the seal.
	wrong, err := nkeys.CreateCurveKeys()
	if err != nil {
		t.Fatal(err)
	}
	wrongPub, err := wrong.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	pinnedWrong := newClient(t, e, client.WithWorkerKey(wrongPub))
	good := "Good-password-" + mysqltest.Token(16)

	tests := []struct {
		name string
		call func(ctx context.Context) error
		want error
		// fromWorker: the worker answered (the error names the job);
		// otherwise the client refused before sending.
		fromWorker bool
	}{
		{"create existing", func(ctx context.Context) error {
			_, err := c.CreateUser(ctx, "app", client.CreateUserRequest{Username: existing})
			return err
		}, client.ErrUserExists, true},
		{"reset missing", func(ctx context.Context) error {
			_, err := c.ResetPassword(ctx, "app", client.ResetPasswordRequest{Username: "missing_user"})
			return err
		}, client.ErrUserNotFound, true},
		{"delete missing", func(ctx context.Context) error {
			_, err := c.DeleteUser(ctx, "app", client.DeleteUserRequest{Username: "missing_user"})
			return err
		}, client.ErrUserNotFound, true},
		{"reset protected", func(ctx context.Context) error {
			_, err := c.ResetPassword(ctx, "app", client.ResetPasswordRequest{Username: f.Protected})
			return err
		}, client.ErrProtectedUser, true},
		{"delete protected", func(ctx context.Context) error {
			_, err := c.DeleteUser(ctx, "app", client.DeleteUserRequest{Username: f.Protected})
			return err
		}, client.ErrProtectedUser, true},
		{"delete foreign", func(ctx context.Context) error {
			_, err := c.DeleteUser(ctx, "app", client.DeleteUserRequest{Username: foreign})
			return err
		}, client.ErrForeignUser, true},
		{"unknown target", func(ctx context.Context) error {
			_, err := c.ListUsers(ctx, "nowhere")
			return err
		}, client.ErrUnknownTarget, true},
		{"unavailable", func(ctx context.Context) error {
			_, err := c.DeleteUser(ctx, "dead", client.DeleteUserRequest{Username: "some_user"})
			return err
		}, client.ErrUnavailable, true},
		{"seal to a wrong pinned key", func(ctx context.Context) error {
			_, err := pinnedWrong.CreateUser(ctx, "app", client.CreateUserRequest{Username: "pinned_user", Password: secret.New(good)})
			return err
		}, client.ErrInvalidPassword, true},
		{"invalid username", func(ctx context.Context) error {
			_, err := c.CreateUser(ctx, "app", client.CreateUserRequest{Username: "Bad-Name"})
			return err
		}, client.ErrInvalidUsername, false},
		{"reserved username", func(ctx context.Context) error {
			_, err := c.DeleteUser(ctx, "app", client.DeleteUserRequest{Username: "mysql_backup"})
			return err
		}, client.ErrInvalidUsername, false},
		{"invalid password", func(ctx context.Context) error {
			_, err := c.CreateUser(ctx, "app", client.CreateUserRequest{Username: "short_pw_user", Password: secret.New("short")})
			return err
		}, client.ErrInvalidPassword, false},
		{"target outside the grammar", func(ctx context.Context) error {
			_, err := c.ListUsers(ctx, "my.app")
			return err
		}, client.ErrInvalidJob, false},
		{"job id outside the grammar", func(ctx context.Context) error {
			_, err := c.DeleteUser(ctx, "app", client.DeleteUserRequest{Username: existing, JobID: "job.1"})
			return err
		}, client.ErrInvalidJob, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(clientCtx(t))
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			ce, ok := errors.AsType[*client.Error](err)
			if !ok || ce.Message == "" {
				t.Fatalf("error %#v is not an *Error with a message", err)
			}
			if (ce.JobID != "") != tt.fromWorker {
				t.Fatalf("job id %q: want the worker's answer %t", ce.JobID, tt.fromWorker)
			}
			if ce.Error() != string(ce.Code)+": "+ce.Message {
				t.Fatalf("Error() = %q", ce.Error())
			}
		})
	}
	if !f.AccountExists(existing) || !other.AccountExists(foreign) || !f.AccountExists(f.Protected) || f.AccountExists("pinned_user") {
		t.Fatal("a refused job changed an account")
	}
}

// TestClientRepeatedJobIDReadsStoredResult: a call repeated with the same
// job id is dropped by the stream as a duplicate; the client answers from
// the stored result, and nothing is applied twice.
func TestClientRepeatedJobIDReadsStoredResult(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, nil)
	c := newClient(t, e)
	user := makeAccounts(t, f, "rep_", 1)[0]

	const deleteID = "repeated-delete-1"
	for i := range 2 {
		acc, err := c.DeleteUser(clientCtx(t), "app", client.DeleteUserRequest{Username: user, JobID: deleteID})
		if err != nil || acc.Username != user {
			t.Fatalf("delete #%d = %+v, %v", i+1, acc, err)
		}
		if i == 0 {
			// Made again: the repeated delete must not drop it.
			f.Exec("CREATE USER ?@'%' IDENTIFIED BY ?", user, mysqltest.Password())
			f.Exec("GRANT ALL PRIVILEGES ON `"+mysqltest.EscapePattern(f.Database)+"`.* TO ?@'%'", user)
		}
	}
	if !f.AccountExists(user) {
		t.Fatal("the repeated delete was applied again")
	}

	// A generated password was sealed to the first call's one-time key.
	const resetID = "repeated-reset-1"
	creds, err := c.ResetPassword(clientCtx(t), "app", client.ResetPasswordRequest{Username: user, JobID: resetID})
	if err != nil || creds.Password.Len() != 64 {
		t.Fatalf("reset: %v", err)
	}
	if _, err := c.ResetPassword(clientCtx(t), "app", client.ResetPasswordRequest{Username: user, JobID: resetID}); !errors.Is(err, client.ErrSecretGone) {
		t.Fatalf("repeated reset: %v, want ErrSecretGone", err)
	}
	if err := loginError(t.Context(), f, user, creds.Password.Reveal()); err != nil {
		t.Fatalf("the first reset's password is not in force: %v", err)
	}

	// The same job id, another op's failure: also from the stored result.
	const failID = "repeated-fail-1"
	for i := range 2 {
		_, err := c.DeleteUser(clientCtx(t), "app", client.DeleteUserRequest{Username: "missing_user", JobID: failID})
		if !errors.Is(err, client.ErrUserNotFound) {
			t.Fatalf("delete #%d of a missing user: %v", i+1, err)
		}
	}
}

// TestClientWaitsWithinContext: with streams but no worker taking jobs, a
// call ends at its context's deadline with ErrNoResult.
func TestClientWaitsWithinContext(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, nil)
	c := newClient(t, e, client.WithWorkerKey(e.svc.PublicKey()))
	if _, err := c.WorkerInfo(clientCtx(t)); err != nil {
		t.Fatalf("WorkerInfo with a worker: %v", err)
	}
	if err := e.svc.Stop(); err != nil {
		t.Fatal(err)
	}
	// No responder (or, while the server drops the stopped worker's
	// subscription, no answer before the deadline): either is ErrNoWorker.
	ictx, icancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer icancel()
	if _, err := c.WorkerInfo(ictx); !errors.Is(err, client.ErrNoWorker) {
		t.Fatalf("WorkerInfo after the worker stopped: %v, want ErrNoWorker", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	start := time.Now()
	_, err := c.DeleteUser(ctx, "app", client.DeleteUserRequest{Username: "queued_user"})
	if !errors.Is(err, client.ErrNoResult) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("DeleteUser without a worker: %v, want ErrNoResult and DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the call took %v past a 1s deadline", d)
	}
	// The default timeout bounds a context without a deadline.
	short, err := client.New(e.nc, client.WithWorkerKey(e.svc.PublicKey()), client.WithTimeout(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := short.ListUsers(context.Background(), "app"); !errors.Is(err, client.ErrNoResult) {
		t.Fatalf("ListUsers with the default timeout: %v, want ErrNoResult", err)
	}
}

// TestClientRotatePasswords: per-account results in order, protected and
// missing accounts fail alone, progress counts up, every new password
// logs in.
func TestClientRotatePasswords(t *testing.T) {
	t.Parallel()
	f := mysqltest.NewFixture(t, mysqltest.Options{})
	e := startWorker(t, []config.Target{target("app", f)}, nil)
	c := newClient(t, e)
	names := makeAccounts(t, f, "rot_", 10)
	usernames := append([]string{f.Protected, "missing_user"}, names...)

	var (
		progress []int
		onResult = map[string]string{}
	)
	results, err := c.RotatePasswords(clientCtx(t), "app", usernames, client.RotateOptions{
		Concurrency: 3,
		OnResult: func(r client.RotateResult) {
			if r.Err == nil {
				onResult[r.Username] = r.Password.Reveal()
			}
		},
		Progress: func(done, total int) {
			if total != len(usernames) {
				t.Errorf("progress total %d, want %d", total, len(usernames))
			}
			progress = append(progress, done)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != len(usernames) {
		t.Fatalf("%d results for %d usernames", len(results), len(usernames))
	}
	for i, done := range progress {
		if done != i+1 {
			t.Fatalf("progress %v, want 1, 2, … %d", progress, len(usernames))
		}
	}
	if len(progress) != len(usernames) {
		t.Fatalf("progress called %d times, want %d", len(progress), len(usernames))
	}
	if !errors.Is(results[0].Err, client.ErrProtectedUser) || !errors.Is(results[1].Err, client.ErrUserNotFound) {
		t.Fatalf("protected: %v; missing: %v", results[0].Err, results[1].Err)
	}
	creds := map[string]string{}
	for i, r := range results[2:] {
		if r.Username != names[i] || r.Err != nil || r.Password.Len() != 64 || r.Account.Username != names[i] || r.JobID == "" {
			t.Fatalf("result %d: %+v", i, r)
		}
		creds[r.Username] = r.Password.Reveal()
	}
	if len(onResult) != len(creds) {
		t.Fatalf("OnResult saw %d successes, want %d", len(onResult), len(creds))
	}
	checkLogins(t, f, creds)
}
