// Package config owns the worker's YAML configuration (contract §6): its
// defaults, strict decoding, ${NAME} environment substitution and validation.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.yaml.in/yaml/v3"

	"github.com/dbusers/dbusers/internal/natsconn"
	"github.com/dbusers/dbusers/secret"
)

// Config is the whole worker configuration file.
type Config struct {
	NATS    NATS    `yaml:"nats"`
	Vault   Vault   `yaml:"vault"`
	Results Results `yaml:"results"`
	Retry   Retry   `yaml:"retry"`
	// ShutdownGrace bounds how long running jobs may finish after SIGTERM
	// before they are handed back to the stream.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// HTTP serves /metrics, /healthz and /readyz.
	HTTP    HTTP     `yaml:"http"`
	Targets []Target `yaml:"targets"`
}

// HTTP configures the operations endpoint.
type HTTP struct {
	// Listen is host:port; empty turns the endpoint off.
	Listen string `yaml:"listen"`
}

// NATS says how the worker reaches NATS and names its JetStream objects.
type NATS struct {
	URL      string   `yaml:"url"` // empty: embedded server
	Embedded Embedded `yaml:"embedded"`
	// Credentials, NkeySeedFile, User and Password are the ways to
	// authenticate to an outside NATS; at most one may be set.
	// Credentials is a .creds file.
	Credentials string `yaml:"credentials"`
	// NkeySeedFile is a file holding a user nkey seed (SU…).
	NkeySeedFile string `yaml:"nkey_seed_file"`
	// User and Password are a user of the server's authorization block;
	// the password comes from the environment (${NAME}).
	User     string        `yaml:"user"`
	Password secret.Secret `yaml:"password"`
	// TLS verifies an outside NATS with a CA of its own, and gives a
	// client certificate to a server that asks for one.
	TLS NATSTLS `yaml:"tls"`
	// StoreEncrypted declares that the outside NATS encrypts its JetStream
	// store at rest (jetstream { key: … }). Jobs that carried a password
	// are then only deleted, not overwritten in the store's files, which
	// costs a rewrite of their block each. The embedded server's store is
	// always encrypted.
	StoreEncrypted  bool          `yaml:"store_encrypted"`
	Prefix          string        `yaml:"prefix"`
	Replicas        int           `yaml:"replicas"`
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// Partitions is how many partitions the jobs stream spreads targets
	// over; each partition is worked by one process at a time. Change it
	// only while the jobs stream is empty.
	Partitions int `yaml:"partitions"`
	// AckWait is how long a job may go without a sign of life before the
	// server redelivers it (to another process when its worker died).
	AckWait time.Duration `yaml:"ack_wait"`
	// LeaseTTL is how long a process keeps a partition without renewing
	// its lease; a dead process's partitions move after it.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// JobsMaxBytes bounds the jobs stream's store. At the bound the stream
	// refuses new jobs (the publisher gets an error) and drops none it
	// accepted; jobs are taken again once the worker has worked some off.
	JobsMaxBytes int64 `yaml:"jobs_max_bytes"`
}

// NATSTLS configures TLS towards an outside NATS. Setting any key makes
// TLS required, whatever the scheme of nats.url.
type NATSTLS struct {
	// CAFile is a PEM file of the CAs the server's certificate must chain
	// to; empty: the system's CAs.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a client certificate and its key, both or
	// neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// ConnSettings are the NATS authentication and TLS settings, as
// natsconn takes them.
func (n NATS) ConnSettings() natsconn.Settings {
	return natsconn.Settings{
		CredsFile:    n.Credentials,
		NkeySeedFile: n.NkeySeedFile,
		User:         n.User,
		Password:     n.Password,
		TLS:          natsconn.TLS{CAFile: n.TLS.CAFile, CertFile: n.TLS.CertFile, KeyFile: n.TLS.KeyFile},
	}
}

// ConnNames are the config keys of ConnSettings, for errors.
func ConnNames() natsconn.Names {
	return natsconn.Names{
		CredsFile:    "nats.credentials",
		NkeySeedFile: "nats.nkey_seed_file",
		User:         "nats.user",
		Password:     "nats.password",
		CAFile:       "nats.tls.ca_file",
		CertFile:     "nats.tls.cert_file",
		KeyFile:      "nats.tls.key_file",
	}
}

// Embedded configures the in-process nats-server started when NATS.URL is empty.
type Embedded struct {
	Listen   string `yaml:"listen"`
	StoreDir string `yaml:"store_dir"`
}

// Vault configures the worker's curve key and the lifetime of sealed
// generated passwords in the vault bucket.
type Vault struct {
	XKeySeedFile string        `yaml:"xkey_seed_file"`
	TTL          time.Duration `yaml:"ttl"`
}

// Results configures how long job results are kept.
type Results struct {
	MaxAge time.Duration `yaml:"max_age"`
}

// Retry configures how long transient MySQL faults are retried per job.
type Retry struct {
	Budget time.Duration `yaml:"budget"`
}

// Target is one managed database: an admin DSN, the database, and the users
// the worker must never change.
type Target struct {
	Name string `yaml:"name"`
	// DSN is the admin account's go-sql-driver/mysql DSN; it may carry the
	// password (from ${NAME}), hence a Secret.
	DSN secret.Secret `yaml:"dsn"`
	// PasswordFile names a file whose content, trailing newline trimmed, is
	// the admin password; the DSN must then carry none. It must not be
	// open to group or others.
	PasswordFile string `yaml:"password_file"`
	// TLS secures the connections to MySQL with a CA of the target's own.
	TLS TargetTLS `yaml:"tls"`
	// AllowExcessPrivileges lets the worker use an admin account that holds
	// more than contract §5.7 allows; it logs a warning naming the excess.
	AllowExcessPrivileges bool     `yaml:"allow_excess_privileges"`
	Database              string   `yaml:"database"`
	ProtectedUsers        []string `yaml:"protected_users"`
}

// Default returns the configuration with every default of contract §6 and
// no targets.
func Default() Config {
	return Config{
		NATS: NATS{
			Embedded:        Embedded{Listen: "127.0.0.1:4222", StoreDir: "./data/nats"},
			Prefix:          "dbusers",
			Replicas:        1,
			DuplicateWindow: 10 * time.Minute,
			Partitions:      8,
			AckWait:         30 * time.Second,
			LeaseTTL:        15 * time.Second,
			JobsMaxBytes:    DefaultJobsMaxBytes,
		},
		ShutdownGrace: 20 * time.Second,
		Vault:         Vault{XKeySeedFile: "./data/worker.xk", TTL: 5 * time.Minute},
		Results:       Results{MaxAge: 24 * time.Hour},
		Retry:         Retry{Budget: 5 * time.Minute},
	}
}

// Load reads the file at path, parses it with the process environment and
// validates it.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(data, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML over Default(), replacing ${NAME} in string values with
// lookupEnv(NAME). Unknown keys and unset variables are errors. It does not
// validate; call Validate.
func Parse(data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg := Default()
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return &cfg, nil // empty file: defaults only
	}
	root := doc.Content[0]
	w := walker{lookupEnv: lookupEnv, seen: map[*yaml.Node]bool{}}
	if err := w.walk(root, reflect.TypeFor[Config](), ""); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	// Decoding the substituted node tree (not re-encoded text) keeps secret
	// values away from the YAML parser and keeps line numbers in errors true.
	if err := root.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &cfg, nil
}

// envRef matches ${NAME}; other uses of '$' are left as they are.
var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

var (
	durationType = reflect.TypeFor[time.Duration]()
	secretType   = reflect.TypeFor[secret.Secret]()
)

// walker checks the node tree against the Config type (unknown keys, shapes)
// and substitutes environment variables in scalar values, in place.
type walker struct {
	lookupEnv func(string) (string, bool)
	seen      map[*yaml.Node]bool // an anchor reached twice is substituted once
}

func (w walker) walk(n *yaml.Node, t reflect.Type, path string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if w.seen[n] {
		return nil
	}
	w.seen[n] = true
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil // an empty key keeps its default (or yields an empty list)
	}
	kind := t.Kind()
	if t == secretType {
		kind = reflect.String // a scalar in YAML, decoded through UnmarshalText
	}
	switch kind {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%s: line %d: expected a mapping", orRoot(path), n.Line)
		}
		fields := map[string]reflect.StructField{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			fields[name] = f
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			kp := join(path, k.Value)
			f, ok := fields[k.Value]
			if !ok {
				return fmt.Errorf("%s: line %d: unknown key", kp, k.Line)
			}
			if err := w.walk(v, f.Type, kp); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("%s: line %d: expected a list", path, n.Line)
		}
		for i, item := range n.Content {
			if err := w.walk(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	default:
		if n.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s: line %d: expected a single value", path, n.Line)
		}
		return w.substitute(n, t, path)
	}
}

// substitute replaces ${NAME} in a scalar, then checks that a number or
// duration parses. Errors never show the value: it may come from a secret,
// and the YAML decoder's own type errors quote it, so they must not be reached.
func (w walker) substitute(n *yaml.Node, t reflect.Type, path string) error {
	if strings.Contains(n.Value, "${") {
		var missing string
		out := envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
			name := envRef.FindStringSubmatch(ref)[1]
			v, ok := w.lookupEnv(name)
			if !ok && missing == "" {
				missing = name
			}
			return v
		})
		if missing != "" {
			return fmt.Errorf("%s: environment variable %s is not set", path, missing)
		}
		if out != n.Value {
			n.Value = out
			// A quoted or explicitly tagged value stays a string. A plain one
			// is re-typed so "replicas: ${N}" can hold a number, but never to
			// null: a secret spelled "null" must not silently become empty.
			if n.Style == 0 {
				n.Tag = ""
				switch n.ShortTag() {
				case "!!int", "!!float", "!!bool":
				default:
					n.Tag = "!!str"
				}
			}
		}
	}
	switch {
	case t == durationType:
		if _, err := time.ParseDuration(n.Value); err != nil {
			return fmt.Errorf("%s: line %d: not a duration such as 90s, 10m or 24h", path, n.Line)
		}
	case t.Kind() == reflect.Int:
		if _, err := strconv.Atoi(n.Value); err != nil {
			return fmt.Errorf("%s: line %d: not an integer", path, n.Line)
		}
	case t.Kind() == reflect.Bool:
		// yaml's own error would quote the value, which may come from a
		// secret's environment variable put here by mistake.
		if n.ShortTag() != "!!bool" {
			return fmt.Errorf("%s: line %d: not a boolean (true or false)", path, n.Line)
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func orRoot(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

var (
	targetNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	databaseRe   = regexp.MustCompile(`^[A-Za-z0-9_$-]{1,64}$`)
	prefixRe     = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// DefaultJobsMaxBytes is the jobs stream's default size bound: a million
// typical jobs, far more than any backlog the worker is sized for, yet a
// bound a runaway publisher meets before the server's disk fills.
const DefaultJobsMaxBytes = 1 << 30

// minJobsMaxBytes keeps room for a few hundred of the largest jobs.
const minJobsMaxBytes = 16 << 20

// minDuplicateWindow is the floor of contract §1: a shorter window would let
// a quick republish of a job through.
const minDuplicateWindow = 2 * time.Minute

// Validate checks every rule of contract §6 and returns all violations
// joined, each naming its key path. It never quotes a DSN.
func (c *Config) Validate() error {
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{path}, args...)...))
	}

	if c.NATS.URL == "" {
		if _, _, err := net.SplitHostPort(c.NATS.Embedded.Listen); err != nil {
			add("nats.embedded.listen", "want host:port (used because nats.url is empty)")
		}
		if c.NATS.Embedded.StoreDir == "" {
			add("nats.embedded.store_dir", "must not be empty (used because nats.url is empty)")
		}
	}
	conn := c.NATS.ConnSettings()
	if c.NATS.URL == "" {
		// The embedded server has no users and no TLS: a key meant for an
		// outside NATS is a mistake (a forgotten nats.url), not ignored.
		for _, key := range conn.Given(ConnNames()) {
			add(key, "applies to an outside NATS only: nats.url is empty, so the worker runs an embedded server without users or TLS")
		}
		if c.NATS.StoreEncrypted {
			add("nats.store_encrypted", "applies to an outside NATS only: nats.url is empty, and the embedded server's store is always encrypted")
		}
	} else {
		if err := natsconn.CheckURLs(c.NATS.URL); err != nil {
			add("nats.url", "%v", err)
		}
		if err := conn.Validate(ConnNames()); err != nil {
			errs = append(errs, err)
		}
		if natsconn.URLHasUserInfo(c.NATS.URL) && conn.Authenticates() {
			add("nats.url", "holds a user, password or token, and another way to authenticate is set too: give one")
		}
	}
	if !prefixRe.MatchString(c.NATS.Prefix) {
		add("nats.prefix", "must match %s", prefixRe)
	}
	if c.NATS.Replicas < 1 || c.NATS.Replicas > 5 {
		add("nats.replicas", "must be 1 to 5, got %d", c.NATS.Replicas)
	}
	if c.NATS.DuplicateWindow < minDuplicateWindow {
		add("nats.duplicate_window", "must be at least %s, got %s", minDuplicateWindow, c.NATS.DuplicateWindow)
	}
	if c.NATS.Partitions < 1 || c.NATS.Partitions > 256 {
		add("nats.partitions", "must be 1 to 256, got %d", c.NATS.Partitions)
	}
	if c.NATS.AckWait < time.Second {
		add("nats.ack_wait", "must be at least 1s, got %s", c.NATS.AckWait)
	}
	if c.NATS.JobsMaxBytes < minJobsMaxBytes {
		add("nats.jobs_max_bytes", "must be at least %d (16 MiB), got %d", minJobsMaxBytes, c.NATS.JobsMaxBytes)
	}
	if c.NATS.LeaseTTL < time.Second {
		add("nats.lease_ttl", "must be at least 1s, got %s", c.NATS.LeaseTTL)
	}
	if c.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			add("http.listen", "want host:port or empty")
		}
	}
	if c.Vault.XKeySeedFile == "" {
		add("vault.xkey_seed_file", "must not be empty")
	}
	for _, d := range []struct {
		path string
		v    time.Duration
	}{
		{"vault.ttl", c.Vault.TTL},
		{"results.max_age", c.Results.MaxAge},
		{"retry.budget", c.Retry.Budget},
		{"shutdown_grace", c.ShutdownGrace},
	} {
		if d.v <= 0 {
			add(d.path, "must be positive, got %s", d.v)
		}
	}

	if len(c.Targets) == 0 {
		add("targets", "at least one target is required")
	}
	names := map[string]int{}
	for i, t := range c.Targets {
		p := fmt.Sprintf("targets[%d]", i)
		if !targetNameRe.MatchString(t.Name) {
			add(p+".name", "%q must match %s", t.Name, targetNameRe)
		} else if j, dup := names[t.Name]; dup {
			add(p+".name", "%q is already used by targets[%d]", t.Name, j)
		} else {
			names[t.Name] = i
		}
		errs = append(errs, t.validateAdmin(p)...)
		if !databaseRe.MatchString(t.Database) {
			add(p+".database", "%q must match %s", t.Database, databaseRe)
		}
		for j, u := range t.ProtectedUsers {
			if u == "" {
				add(fmt.Sprintf("%s.protected_users[%d]", p, j), "must not be empty")
			}
		}
	}
	return errors.Join(errs...)
}

// dsnSafeErrors are the parser's fixed-text errors; any other parser error
// may quote part of the DSN (a parameter value, the database name), which can
// hold a password, so its text is withheld.
var dsnSafeErrors = []string{
	"did you forget to escape a param value?",
	"network address not terminated (missing closing brace)",
	"missing the slash separating the database name",
	"interpolateParams can not be used with unsafe collations",
}

func checkDSN(dsn secret.Secret) error {
	if dsn.IsZero() {
		return errors.New("must not be empty")
	}
	_, err := mysql.ParseDSN(dsn.Reveal())
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, s := range dsnSafeErrors {
		if strings.HasSuffix(msg, s) {
			return fmt.Errorf("not a valid go-sql-driver/mysql DSN: %s", s)
		}
	}
	return errors.New("not a valid go-sql-driver/mysql DSN: a parameter or the database name is malformed (details withheld, they may quote secrets)")
}
