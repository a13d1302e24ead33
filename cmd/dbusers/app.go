package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/dbusers/dbusers/client"
	"github.com/dbusers/dbusers/internal/natsconn"
	"github.com/dbusers/dbusers/secret"
)

// Defaults of the global flags.
const (
	defaultNATSURL = "nats://127.0.0.1:4222"
	defaultTimeout = 30 * time.Second
)

// terminal reads passwords from the terminal on stdin without echo.
type terminal interface {
	ReadPassword() (string, error)
}

// stdio is what a run of the CLI reads and writes.
type stdio struct {
	in  io.Reader
	out io.Writer
	err io.Writer
	// term is the terminal on stdin; nil when stdin is not a terminal (the
	// password is then stdin's first line).
	term terminal
	// stderrIsTTY shows rotate's progress bar.
	stderrIsTTY bool
	// contextPath is the context file the global flags default to
	// (contextFile in the working directory); "" for none.
	contextPath string
}

// app is one run of the CLI: its stdio and its global flags.
type app struct {
	stdio
	natsURL string
	creds   string
	nkey    string
	user    string
	// passwordFile and envPassword ($DBUSERS_NATS_PASSWORD) are the two
	// ways to give the NATS password; there is no flag that takes the
	// password itself, since argv is visible to every user of the machine.
	passwordFile string
	envPassword  secret.Secret
	tlsCA        string
	tlsCert      string
	tlsKey       string
	target       string
	// jsAPIPrefix is the JetStream API prefix of an orchestrator account
	// that imports the worker's streams (deploy/nats-accounts.conf).
	jsAPIPrefix string
	prefix      string
	workerKey   string
	timeout     time.Duration
	json        bool
	// cliCtx is the context file's settings; urlFromContext says that
	// natsURL is the context's, which the hints of connection errors name.
	cliCtx         cliContext
	urlFromContext bool
}

// failure is an error already worded for the user: run prints it as is.
// It wraps its cause, when it has one, for errors.Is and errors.As.
type failure struct {
	msg   string
	cause error
	// status and code, when status is not 0, are the exit status and the
	// --json code; otherwise classify derives them from the cause.
	status int
	code   string
	// jobID and jobState name the job the failure is about, when known.
	jobID, jobState string
}

func (f *failure) Error() string { return f.msg }

// Unwrap returns the error the failure words, or nil.
func (f *failure) Unwrap() error { return f.cause }

// failf returns a failure of the CLI's own, with no underlying error.
func failf(format string, args ...any) error { return &failure{msg: fmt.Sprintf(format, args...)} }

// fail returns a failure that words cause for the user.
func fail(cause error, format string, args ...any) error {
	return &failure{msg: fmt.Sprintf(format, args...), cause: cause}
}

// usagef returns a failure of the command line or the settings: exit
// status exitUsage.
func usagef(format string, args ...any) error {
	return &failure{msg: fmt.Sprintf(format, args...), status: exitUsage, code: codeUsage}
}

// usage is usagef with the error that showed the setting to be wrong.
func usage(cause error, format string, args ...any) error {
	return &failure{msg: fmt.Sprintf(format, args...), cause: cause, status: exitUsage, code: codeUsage}
}

// run runs the CLI with args (without the program name) and returns the
// exit status: 0, or after printing the error to stderr (as JSON under
// --json) the status of its kind (exit.go).
func run(ctx context.Context, args []string, getenv func(string) string, std stdio) int {
	a := &app{stdio: std}
	root := a.rootCommand(getenv)
	root.SetArgs(args)
	root.SetIn(std.in)
	root.SetOut(std.out)
	root.SetErr(std.err)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return exitOK
	}
	if _, ok := errors.AsType[*quiet](err); ok {
		status, _ := classify(err)
		return status
	}
	if f, ok := errors.AsType[*failure](err); ok {
		return printError(std.err, a.json, f.msg, err)
	}
	// Cobra's own errors: flags and arguments.
	msg := fmt.Sprintf("%s.\nRun '%s --help' for usage.", strings.TrimSuffix(capitalize(err.Error()), "."), cmd.CommandPath())
	return printError(std.err, a.json, msg, err)
}

func (a *app) rootCommand(getenv func(string) string) *cobra.Command {
	root := &cobra.Command{
		Use:   "dbusers",
		Short: "Manage the users of a managed MySQL database",
		Long: `dbusers manages the users of a managed MySQL database (a target) through
the dbusers worker, over NATS. Passwords never travel in clear: a chosen
password is sealed to the worker's key, a generated one is read once from
the worker's vault.

A NATS with authentication takes one of --creds, --nkey, or --user with its
password (from --password-file or $DBUSERS_NATS_PASSWORD; no flag takes the
password itself, since the command line is visible to every user of the
machine). A NATS with TLS takes a tls:// URL and, when its certificate is
from a private CA, --tls-ca; --tls-cert and --tls-key give a client
certificate to a server that asks for one.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.CompletionOptions.DisableDefaultCmd = true
	// The context of a `make run` in this directory gives the defaults of
	// the worker's address, target and prefix; a flag or variable wins.
	cc, ctxErr := loadContext(a.contextPath)
	a.cliCtx = cc
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		f := cmd.Flags()
		if ctxErr != nil && !(given(f.Changed("nats-url"), getenv("DBUSERS_NATS_URL")) && given(f.Changed("target"), getenv("DBUSERS_TARGET"))) {
			return usage(ctxErr, "%s.", capitalize(ctxErr.Error()))
		}
		a.urlFromContext = cc.from(f.Changed("nats-url"), getenv("DBUSERS_NATS_URL"), cc.NATSURL)
		return nil
	}
	f := root.PersistentFlags()
	f.StringVar(&a.natsURL, "nats-url", envOr(getenv, "DBUSERS_NATS_URL", orDefault(cc.NATSURL, defaultNATSURL)), "NATS server of the worker [$DBUSERS_NATS_URL]")
	f.StringVar(&a.creds, "creds", getenv("DBUSERS_CREDS"), "NATS credentials file (.creds) [$DBUSERS_CREDS]")
	f.StringVar(&a.nkey, "nkey", getenv("DBUSERS_NKEY"), "NATS user nkey seed file (SU…) [$DBUSERS_NKEY]")
	f.StringVar(&a.user, "user", getenv("DBUSERS_NATS_USER"), "NATS user; its password from --password-file or $DBUSERS_NATS_PASSWORD [$DBUSERS_NATS_USER]")
	f.StringVar(&a.passwordFile, "password-file", getenv("DBUSERS_NATS_PASSWORD_FILE"), "file whose first line is the NATS user's password [$DBUSERS_NATS_PASSWORD_FILE]")
	a.envPassword = secret.New(getenv("DBUSERS_NATS_PASSWORD"))
	f.StringVar(&a.tlsCA, "tls-ca", getenv("DBUSERS_TLS_CA"), "CA certificates (PEM) to verify the NATS server with; makes TLS required [$DBUSERS_TLS_CA]")
	f.StringVar(&a.tlsCert, "tls-cert", getenv("DBUSERS_TLS_CERT"), "client certificate (PEM), for a NATS server that verifies clients [$DBUSERS_TLS_CERT]")
	f.StringVar(&a.tlsKey, "tls-key", getenv("DBUSERS_TLS_KEY"), "private key (PEM) of --tls-cert [$DBUSERS_TLS_KEY]")
	f.StringVar(&a.jsAPIPrefix, "js-api-prefix", envOr(getenv, "DBUSERS_JS_API_PREFIX", "$JS.API"),
		"JetStream API prefix of the worker's streams (dbusers.api in an orchestrator account of its own) [$DBUSERS_JS_API_PREFIX]")
	f.StringVar(&a.target, "target", envOr(getenv, "DBUSERS_TARGET", cc.Target), "the database (target) to manage, as the worker's config names it [$DBUSERS_TARGET]")
	f.StringVar(&a.prefix, "prefix", envOr(getenv, "DBUSERS_PREFIX", orDefault(cc.Prefix, client.DefaultPrefix)), "subject prefix of the worker (its nats.prefix) [$DBUSERS_PREFIX]")
	f.StringVar(&a.workerKey, "worker-xkey", getenv("DBUSERS_WORKER_XKEY"), "pin the worker's curve public key (X…) instead of asking the worker [$DBUSERS_WORKER_XKEY]")
	f.DurationVar(&a.timeout, "timeout", defaultTimeout, "how long to wait for the worker (per account for database-users-rotate)")
	f.BoolVar(&a.json, "json", false, "print the result as JSON on stdout, and an error as JSON on stderr")
	root.AddCommand(a.listCommand(), a.createCommand(), a.updatePasswordCommand(), a.deleteCommand(), a.discardOldPasswordCommand(), a.rotateCommand(), a.jobResultCommand())
	return root
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// orDefault returns s, or def when s is empty.
func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// given reports whether a global setting was given by its flag or its
// environment variable.
func given(flagChanged bool, env string) bool { return flagChanged || env != "" }

// urlQuestion is what to check when nothing answers at the NATS URL: the
// flag and variable, or the make run whose context gave the URL.
func (a *app) urlQuestion() string {
	if a.urlFromContext {
		return fmt.Sprintf("The address comes from %s, which make run wrote: is that make run still running? --nats-url or DBUSERS_NATS_URL sets another.", a.cliCtx.path)
	}
	return "Is the worker running, and is --nats-url (or DBUSERS_NATS_URL) right?"
}

// session is a connection to the worker for one command.
type session struct {
	c  *client.Client
	nc *nats.Conn
}

// connect checks the flags, connects to NATS and checks that a worker
// answers, so that no prompt is shown when nothing would take the job.
func (a *app) connect(ctx context.Context) (*session, error) {
	s, err := a.dial()
	if err != nil {
		return nil, err
	}
	ictx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	if _, err := s.c.WorkerInfo(ictx); err != nil {
		s.close()
		return nil, a.describe(err, "")
	}
	return s, nil
}

// dial checks the flags and connects to NATS, without asking for a worker:
// reading a job's state needs none.
func (a *app) dial() (*session, error) {
	if a.target == "" {
		return nil, usagef("No target: give --target or set DBUSERS_TARGET (the target's name in the worker's config).")
	}
	if err := client.CheckTarget(a.target); err != nil {
		return nil, usagef("Invalid target %q: it must match ^[a-z0-9][a-z0-9_-]{0,62}$.", a.target)
	}
	if a.timeout <= 0 {
		return nil, usagef("Invalid --timeout %v: it must be positive.", a.timeout)
	}
	conn, names, err := a.natsSettings()
	if err != nil {
		return nil, err
	}
	connOpts, err := conn.Options(names)
	if err != nil {
		return nil, usage(err, "Invalid NATS settings:\n%v", err)
	}
	if err := natsconn.CheckURLs(a.natsURL); err != nil {
		return nil, usage(err, "Invalid --nats-url (or DBUSERS_NATS_URL): %v.", err)
	}
	opts := []nats.Option{nats.Name("dbusers-cli"), nats.Timeout(min(a.timeout, 5*time.Second))}
	nc, err := nats.Connect(a.natsURL, append(opts, connOpts...)...)
	if err != nil {
		f := &failure{cause: err, status: exitUnavailable, code: codeNATS}
		if hint := conn.Hint(err, names); hint != "" {
			// The server answered and refused the login or the TLS
			// handshake: the settings are wrong, waiting does not help.
			f.msg = fmt.Sprintf("Cannot connect to NATS at %s: %v.\n%s.", natsconn.RedactURLs(a.natsURL), err, capitalize(hint))
			f.status, f.code = exitUsage, codeNATSRefused
			return nil, f
		}
		f.msg = fmt.Sprintf("Cannot connect to NATS at %s: %v.\n%s", natsconn.RedactURLs(a.natsURL), err, a.urlQuestion())
		return nil, f
	}
	copts := []client.Option{client.WithPrefix(a.prefix), client.WithTimeout(a.timeout), client.WithJetStreamAPIPrefix(a.jsAPIPrefix)}
	if a.workerKey != "" {
		copts = append(copts, client.WithWorkerKey(a.workerKey))
	}
	c, err := client.New(nc, copts...)
	if err != nil {
		nc.Close()
		return nil, usage(err, "%s.", capitalize(strings.TrimPrefix(err.Error(), "client: ")))
	}
	return &session{c: c, nc: nc}, nil
}

func (s *session) close() { s.nc.Close() }

// natsSettings gathers the NATS authentication and TLS flags, and the names
// errors give them.
func (a *app) natsSettings() (natsconn.Settings, natsconn.Names, error) {
	names := natsconn.Names{
		CredsFile: "--creds", NkeySeedFile: "--nkey", User: "--user", Password: "--password-file or DBUSERS_NATS_PASSWORD",
		CAFile: "--tls-ca", CertFile: "--tls-cert", KeyFile: "--tls-key",
	}
	s := natsconn.Settings{
		CredsFile:    a.creds,
		NkeySeedFile: a.nkey,
		User:         a.user,
		TLS:          natsconn.TLS{CAFile: a.tlsCA, CertFile: a.tlsCert, KeyFile: a.tlsKey},
	}
	switch {
	case a.passwordFile != "" && !a.envPassword.IsZero():
		return s, names, usagef("Give the NATS password with --password-file or DBUSERS_NATS_PASSWORD, not both.")
	case a.passwordFile != "":
		pw, err := natsconn.ReadPasswordFile(a.passwordFile)
		if err != nil {
			return s, names, usage(err, "Invalid NATS settings:\n--password-file: %v", err)
		}
		s.Password = pw
		names.Password = "--password-file"
	case !a.envPassword.IsZero():
		s.Password = a.envPassword
		names.Password = "DBUSERS_NATS_PASSWORD"
	}
	if s.Authenticates() && natsconn.URLHasUserInfo(a.natsURL) {
		return s, names, usagef("--nats-url (or DBUSERS_NATS_URL) holds a user, password or token, and --creds, --nkey or --user is given too: give one.")
	}
	return s, names, nil
}

// describe words an error of the client for the user. username is the
// account the command was about ("" for none). A job without a result in
// time is worded by notDone where the job is known.
func (a *app) describe(err error, username string) error {
	if ce, ok := errors.AsType[*client.Error](err); ok {
		return fail(err, "%s", a.describeCode(ce, username))
	}
	switch {
	case errors.Is(err, client.ErrNoWorker):
		return fail(err, "No dbusers worker answered at %s (prefix %q).\n%s",
			natsconn.RedactURLs(a.natsURL), a.prefix, a.urlQuestion())
	case errors.Is(err, client.ErrNoResult) && errors.Is(err, context.Canceled):
		return fail(err, "Interrupted before the worker answered.")
	case errors.Is(err, client.ErrNoResult):
		return fail(err, "The worker did not answer within %v.\n"+
			"Is the worker running and reaching its database? --timeout sets the wait.", a.timeout)
	case errors.Is(err, client.ErrSecretGone):
		return fail(err, "User %q was changed, but its generated password could not be read from the vault (expired or already read).\n"+
			"Set a new one with database-users-update-password.", username)
	case errors.Is(err, client.ErrSecretUnread):
		return fail(err, "User %q was changed, but its generated password could not be read (%s).\n"+
			"Set a new one with database-users-update-password.", username, strings.TrimPrefix(err.Error(), "client: "))
	case errors.Is(err, context.Canceled):
		return fail(err, "Interrupted.")
	}
	return fail(err, "%s.", capitalize(strings.TrimPrefix(err.Error(), "client: ")))
}

// describeCode words the worker's answer as one or more sentences.
func (a *app) describeCode(e *client.Error, username string) string {
	switch e.Code {
	case client.CodeUserExists:
		return fmt.Sprintf("User %q already exists.", username)
	case client.CodeUserNotFound:
		return fmt.Sprintf("User %q does not exist.", username)
	case client.CodeProtectedUser:
		return fmt.Sprintf("User %q is protected.", username)
	case client.CodeForeignUser:
		return fmt.Sprintf("User %q is not managed here: it holds privileges outside the database of target %q, so it is left untouched.", username, a.target)
	case client.CodeInvalidUsername:
		return "Invalid username: " + sentence(e.Message)
	case client.CodeInvalidPassword:
		return "Invalid password: " + sentence(e.Message)
	case client.CodeUnknownTarget:
		return fmt.Sprintf("Unknown target %q: the worker has no target of that name (check --target or DBUSERS_TARGET).", a.target)
	case client.CodeUnavailable:
		// The worker's message is for its operators (it can name the
		// driver's error); the user needs what happened and what to do.
		return fmt.Sprintf("The database of target %q did not answer the worker through its retry budget: its server is down or cannot be reached.\n"+
			"Run the command again once it is back; the worker's log and its /readyz endpoint say more.", a.target)
	case client.CodeInvalidJob:
		return "Invalid request: " + sentence(e.Message)
	}
	return "The worker failed: " + sentence(e.Message)
}

// sentence ends s with a full stop, unless it ends one already.
func sentence(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || strings.HasSuffix(s, ".") || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "!") {
		return s
	}
	return s + "."
}

// capitalize upper-cases the first letter of a message.
func capitalize(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
