// Package mysqlops owns the SQL of account management on one managed
// database (a target): creating, re-keying, dropping and listing the accounts
// that belong to it, deciding which accounts belong, and classifying the
// errors MySQL returns. It holds no job or NATS logic.
package mysqlops

import (
	"context"
	"crypto/tls"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/dbusers/dbusers/secret"
	"github.com/go-sql-driver/mysql"
)

// DefaultStatementTimeout bounds one account statement on the server.
// Under FLUSH TABLES WITH READ LOCK a CREATE USER waits forever otherwise.
const DefaultStatementTimeout = 30 * time.Second

// Options describe one target.
type Options struct {
	// Database is the target's database name, unescaped.
	Database string
	// Protected lists the usernames that are never changed or dropped.
	Protected []string
	// StatementTimeout bounds each statement; DefaultStatementTimeout when 0.
	StatementTimeout time.Duration
	// Privileges configures the check of the admin account's grants
	// (contract §5.7); off when zero.
	Privileges PrivilegeCheck
}

// Account is one account that belongs to a target.
type Account struct {
	Username  string
	ReadOnly  bool
	Protected bool
	// OldPassword: an old password works beside the current one
	// (ResetPasswordKeepOld), until DiscardOldPassword. Set by List and
	// by the old-password operations; a plain reset drops it.
	OldPassword bool
}

// Target runs account operations for one managed database. It is safe for
// concurrent use, but the operations on one username must be serialized by
// the caller (the job worker runs a target's jobs in order).
type Target struct {
	db        *sql.DB
	database  string
	grantOn   string // `db`.* with _ and % escaped, for GRANT and REVOKE
	protected map[string]bool
	timeout   time.Duration

	flavorMu sync.Mutex
	flavor   flavor // zero until detected

	privMu    sync.Mutex
	privCheck PrivilegeCheck
	privOK    bool      // the privilege check passed (or its excess is allowed)
	privAt    time.Time // when it last passed

	legacy legacyPattern // whether an unescaped grant reaches other databases
}

// refusedCollations cannot be used with client-side interpolation
// (go-sql-driver/mysql): the driver refuses to escape for them.
var refusedCollations = []string{"big5", "gbk", "sjis", "cp932"}

// DBOptions add to a target's admin DSN what the configuration holds
// beside it.
type DBOptions struct {
	// TLS, when set, secures every connection of the pool with this
	// configuration (a target's own CA, server name, client certificate).
	// The DSN's tls parameter must then be absent or true.
	TLS *tls.Config
	// PasswordSource, when set, gives the password, in place of the
	// DSN's, before every new connection of the pool (a password file read
	// again, so that a rotated admin password needs no restart:
	// connections already open stay logged in, new ones use the new
	// password). An error fails that connection as transient, nothing sent.
	PasswordSource func() (secret.Secret, error)
}

// PasswordSourceError is a failure of DBOptions.PasswordSource: no
// connection was made.
type PasswordSourceError struct{ Err error }

func (e *PasswordSourceError) Error() string {
	return "read the admin password: " + e.Err.Error()
}

func (e *PasswordSourceError) Unwrap() error { return e.Err }

// LoginRefusedError is MySQL refusing the admin's login (1045) with a
// password from DBOptions.PasswordSource. Unlike a DSN's password, which
// cannot change without a restart, that password is being rotated in two
// steps that no one can make atomic (ALTER USER, then the file, or the
// reverse): between them every new connection is refused, and the next
// one may log in. No statement was sent.
type LoginRefusedError struct{ Err error }

func (e *LoginRefusedError) Error() string {
	return "MySQL refused the admin's login with the password from its file " +
		"(if the password is being rotated, both MySQL and the file must have the new one): " + e.Err.Error()
}

func (e *LoginRefusedError) Unwrap() error { return e.Err }

// sourcedConnector marks refused logins of a pool whose password comes
// from a PasswordSource (LoginRefusedError).
type sourcedConnector struct{ driver.Connector }

func (c sourcedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if errors.Is(err, &mysql.MySQLError{Number: 1045}) {
		return nil, &LoginRefusedError{Err: err}
	}
	return conn, err
}

// OpenDB opens a connection pool for a target's admin DSN. It forces
// client-side parameter interpolation (account statements refuse server-side
// placeholders) and a connect timeout. It does not connect.
func OpenDB(dsn secret.Secret, opts DBOptions) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn.Reveal())
	if err != nil {
		// The driver's message may quote the DSN, password included.
		return nil, errors.New("the admin DSN does not parse (check its format: user:password@tcp(host:port)/)")
	}
	if opts.TLS != nil {
		if cfg.TLSConfig != "" && cfg.TLSConfig != "true" {
			return nil, errors.New("the admin DSN's tls parameter conflicts with the target's TLS configuration: remove it from the DSN")
		}
		// Set on the connector, not registered by name with the driver:
		// the driver's registry is process-wide, and two workers (or two
		// targets) in one process must never share a name.
		cfg.TLS, cfg.TLSConfig = opts.TLS.Clone(), ""
	}
	if src := opts.PasswordSource; src != nil {
		// The driver calls this with a copy of cfg for each connection.
		if err := cfg.Apply(mysql.BeforeConnect(func(_ context.Context, c *mysql.Config) error {
			pw, err := src()
			if err != nil {
				return &PasswordSourceError{Err: err}
			}
			c.Passwd = pw.Reveal()
			return nil
		})); err != nil {
			return nil, fmt.Errorf("admin DSN: %w", err)
		}
	}
	for _, c := range refusedCollations {
		if strings.HasPrefix(strings.ToLower(cfg.Collation), c) {
			return nil, fmt.Errorf("the admin DSN's collation %q cannot be used: the driver refuses to escape parameters for it", cfg.Collation)
		}
	}
	cfg.InterpolateParams = true
	// Many accounts' SHOW GRANTS go in one round trip (inspectMany); every
	// value is escaped by the interpolation, never concatenated.
	cfg.MultiStatements = true
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("admin DSN: %w", err)
	}
	var connector driver.Connector = conn
	if opts.PasswordSource != nil {
		connector = sourcedConnector{conn}
	}
	db := sql.OpenDB(connector)
	// Account changes are serialized inside the server; a few connections
	// cover list queries running beside them.
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

// New returns a Target that runs its statements on db. The caller owns db.
func New(db *sql.DB, opts Options) *Target {
	t := &Target{
		db:        db,
		database:  opts.Database,
		grantOn:   "`" + escapePattern(opts.Database) + "`.*",
		protected: make(map[string]bool, len(opts.Protected)),
		timeout:   opts.StatementTimeout,
		privCheck: opts.Privileges,
	}
	if t.timeout <= 0 {
		t.timeout = DefaultStatementTimeout
	}
	for _, u := range opts.Protected {
		t.protected[u] = true
	}
	return t
}

// IsProtected reports whether username is one of the target's protected users.
func (t *Target) IsProtected(username string) bool { return t.protected[username] }

// Ping checks that the server answers.
func (t *Target) Ping(ctx context.Context) error { return explainTLS(t.db.PingContext(ctx)) }

// escapePattern escapes the wildcard characters of a GRANT database pattern
// and doubles backticks, so a grant reaches exactly one database.
func escapePattern(db string) string {
	r := strings.NewReplacer("`", "``", `\`, `\\`, "_", `\_`, "%", `\%`)
	return r.Replace(db)
}

// grantPrivileges is what a new account receives on the target's database.
func grantPrivileges(readOnly bool) string {
	if readOnly {
		return "SELECT, SHOW VIEW"
	}
	return "ALL PRIVILEGES" // the grant the protected user has
}

// Intent is the record of which job last began to create or drop a
// username. MariaDB's account statements commit on their own and are not
// atomic, so after a crash or a lost reply only this record tells a
// retried job that the account it finds (create) or misses (delete) is its
// own doing.
type Intent interface {
	// Mine reports whether an attempt of this job, in this or an earlier
	// delivery, may have run the statement: it recorded the intent and did
	// not learn that the statement failed to run.
	Mine(ctx context.Context) (bool, error)
	// Record notes that this job is about to send the statement. earlier
	// reports that an earlier attempt or delivery of this job may have run
	// it: it was sent, and its outcome is unknown.
	Record(ctx context.Context) (earlier bool, err error)
	// Unsent notes that the statement just recorded did not run: it never
	// reached the server, or the server refused it.
	Unsent()
}

// Ready is waited for right before the first statement that sets a
// password. The worker stores the sealed password in the vault meanwhile:
// MySQL must never hold a password nobody can read. An error stops the
// operation with MySQL unchanged. Nil waits for nothing.
type Ready func(ctx context.Context) error

func (r Ready) wait(ctx context.Context) error {
	if r == nil {
		return nil
	}
	return r(ctx)
}

// Create makes username@'%' with password and its grant. An existing
// account is ErrUserExists, unless intent says this job recorded it before
// an earlier CREATE USER: then it is this job's own half-made account, and
// its password is set and its grant completed. A protected user always
// exists. If the GRANT fails for good, the new account is dropped again, so
// no account is left without its grant.
func (t *Target) Create(ctx context.Context, username string, password secret.Secret, readOnly bool, intent Intent, ready Ready) error {
	if t.protected[username] {
		return ErrUserExists
	}
	st, err := t.inspect(ctx, username, true)
	if err != nil {
		return err
	}
	if st.exists {
		if st.foreign {
			return ErrUserExists
		}
		mine, err := intent.Mine(ctx)
		if err != nil {
			return err
		}
		if !mine {
			return ErrUserExists
		}
		if err := ready.wait(ctx); err != nil {
			return err
		}
		if err := t.execSecret(ctx, "ALTER USER ?@'%' IDENTIFIED BY ?", username, password); err != nil {
			return fmt.Errorf("set password of the half-made account: %w", err)
		}
		if st.granted && st.readOnly != readOnly {
			if err := t.revokeAll(ctx, username); err != nil {
				return err
			}
		}
		return t.grant(ctx, username, readOnly)
	}
	if err := ready.wait(ctx); err != nil {
		return err
	}
	// Recorded right before the statement, so that the record means it
	// may have been sent.
	earlier, err := intent.Record(ctx)
	if err != nil {
		return err
	}
	if err := t.execSecret(ctx, "CREATE USER ?@'%' IDENTIFIED BY ?", username, password); err != nil {
		if NothingSent(err) || FromServer(err) && Classify(err) == Permanent {
			intent.Unsent()
		}
		if errors.Is(err, &mysql.MySQLError{Number: 1396}) {
			if earlier {
				// An earlier attempt's CREATE USER, sent with an unknown
				// outcome, may have run meanwhile: this job's own account,
				// which the next attempt finds and completes.
				return fmt.Errorf("create user: %w", errCreatedMeanwhile)
			}
			return ErrUserExists // created by someone else in between
		}
		return fmt.Errorf("create user: %w", err)
	}
	if err := t.grant(ctx, username, readOnly); err != nil {
		if Classify(err) == Permanent {
			// MariaDB account statements are not atomic: undo the CREATE so
			// no account stays without its grant.
			if dropErr := t.exec(ctx, "DROP USER IF EXISTS ?@'%'", username); dropErr != nil {
				return errors.Join(err, fmt.Errorf("drop the half-made account: %w", dropErr))
			}
		}
		return err
	}
	return nil
}

// Abandon is called by a create job that gives up: if intent says this job
// may have sent CREATE USER and the account exists with no privileges
// outside the target's database, it is dropped, so that no half-made
// account outlives the job. Otherwise nothing is touched.
func (t *Target) Abandon(ctx context.Context, username string, intent Intent) error {
	if t.protected[username] {
		return nil
	}
	mine, err := intent.Mine(ctx)
	if err != nil || !mine {
		return err
	}
	st, err := t.inspect(ctx, username, true)
	if err != nil {
		return err
	}
	if !st.exists || st.foreign {
		return nil
	}
	return t.exec(ctx, "DROP USER IF EXISTS ?@'%'", username)
}

func (t *Target) grant(ctx context.Context, username string, readOnly bool) error {
	err := t.exec(ctx, "GRANT "+grantPrivileges(readOnly)+" ON "+t.grantOn+" TO ?@'%'", username)
	if err != nil {
		return fmt.Errorf("grant: %w", err)
	}
	return nil
}

func (t *Target) revokeAll(ctx context.Context, username string) error {
	err := t.exec(ctx, "REVOKE ALL PRIVILEGES ON "+t.grantOn+" FROM ?@'%'", username)
	if err != nil && !errors.Is(err, &mysql.MySQLError{Number: 1141}) { // no grant: done
		return fmt.Errorf("revoke: %w", err)
	}
	return nil
}

// ResetPassword sets a new password on an account that belongs to the target.
// Open sessions are left alone.
func (t *Target) ResetPassword(ctx context.Context, username string, password secret.Secret, ready Ready) (Account, error) {
	acct, err := t.owned(ctx, username, false)
	if err != nil {
		return acct, err
	}
	if err := ready.wait(ctx); err != nil {
		return acct, err
	}
	if err := t.execSecret(ctx, "ALTER USER ?@'%' IDENTIFIED BY ?", username, password); err != nil {
		if errors.Is(err, &mysql.MySQLError{Number: 1396}) {
			return acct, ErrUserNotFound
		}
		return acct, fmt.Errorf("alter user: %w", err)
	}
	return acct, t.dropOldAfterReset(ctx, []string{username})
}

// Delete drops an account that belongs to the target, then ends its open
// sessions (a dropped account's session otherwise keeps working). When the
// account is already gone and intent says this job recorded the drop
// earlier, the sessions are ended and the delete reports success.
func (t *Target) Delete(ctx context.Context, username string, intent Intent) (Account, error) {
	// Delete looks at every host: it ends every session of the name.
	acct, err := t.owned(ctx, username, true)
	if errors.Is(err, errGone) {
		mine, ierr := intent.Mine(ctx)
		if ierr != nil {
			return acct, ierr
		}
		if mine {
			return acct, t.killSessions(ctx, username)
		}
		return acct, ErrUserNotFound
	}
	if err != nil {
		return acct, err
	}
	if _, err := intent.Record(ctx); err != nil {
		return acct, err
	}
	if err := t.exec(ctx, "DROP USER IF EXISTS ?@'%'", username); err != nil {
		return acct, fmt.Errorf("drop user: %w", err)
	}
	return acct, t.killSessions(ctx, username)
}

// errGone is owned's ErrUserNotFound for an account that does not exist at
// all (rather than one that exists without privileges here).
var errGone = fmt.Errorf("%w: no account of that name exists", ErrUserNotFound)

// owned inspects username and returns its Account when it belongs to the
// target and may be changed.
func (t *Target) owned(ctx context.Context, username string, anyHost bool) (Account, error) {
	acct := Account{Username: username, Protected: t.protected[username]}
	if acct.Protected {
		return acct, ErrProtected
	}
	st, err := t.inspect(ctx, username, anyHost)
	if err != nil {
		return acct, err
	}
	acct.ReadOnly = st.readOnly
	return acct, st.belongs()
}

func (t *Target) killSessions(ctx context.Context, username string) error {
	rows, err := t.db.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?", username)
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return fmt.Errorf("list sessions: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	for _, id := range ids {
		_, err := t.db.ExecContext(ctx, "KILL CONNECTION ?", id)
		if err != nil && !errors.Is(err, &mysql.MySQLError{Number: 1094}) { // already gone
			return fmt.Errorf("end session %d: %w", id, err)
		}
	}
	return nil
}

// exec runs one statement bounded by the statement timeout.
func (t *Target) exec(ctx context.Context, query string, args ...any) error {
	fl, err := t.detect(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout+5*time.Second)
	defer cancel()
	_, err = t.db.ExecContext(ctx, fl.bound(query, t.timeout), args...)
	return err
}

// execSecret runs a statement on username and a password, revealed only
// here. A server error message can quote the statement (1064 "near '…'"),
// so the message is withheld; the error number survives for classification.
func (t *Target) execSecret(ctx context.Context, query, username string, password secret.Secret) error {
	err := t.exec(ctx, query, username, password.Reveal())
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		return &mysql.MySQLError{Number: myErr.Number, SQLState: myErr.SQLState,
			Message: "message withheld: the statement carried a password"}
	}
	return err
}
