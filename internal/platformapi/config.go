package platformapi

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nkeys"
	"go.yaml.in/yaml/v3"

	"github.com/dbusers/dbusers/client"
	"github.com/dbusers/dbusers/internal/natsconn"
	"github.com/dbusers/dbusers/secret"
)

// Config is dbusers-api's YAML file (contract §8).
type Config struct {
	// Listen is the HTTP address, host:port.
	Listen string `yaml:"listen"`
	NATS   NATS   `yaml:"nats"`
	Auth   Auth   `yaml:"auth"`
	// Timeout bounds how long one request waits for the worker's result.
	Timeout   time.Duration `yaml:"timeout"`
	Databases []Database    `yaml:"databases"`
}

// NATS says how to reach the worker's NATS: the same login and TLS
// settings as the worker's and the CLI's.
type NATS struct {
	URL    string `yaml:"url"`
	Prefix string `yaml:"prefix"`
	// Credentials is a .creds file; NkeySeedFile a user nkey seed file;
	// User and Password a user of the server's authorization block (the
	// password from the environment, ${NAME}). At most one way.
	Credentials  string        `yaml:"credentials"`
	NkeySeedFile string        `yaml:"nkey_seed_file"`
	User         string        `yaml:"user"`
	Password     secret.Secret `yaml:"password"`
	TLS          TLS           `yaml:"tls"`
	// WorkerXKey pins the worker's curve public key (X…) instead of asking
	// the worker's info endpoint for it.
	WorkerXKey string `yaml:"worker_xkey"`
}

// TLS verifies the NATS server with a CA of its own and gives a client
// certificate to a server that asks for one.
type TLS struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Auth names the key that the platform signs its tokens with.
type Auth struct {
	// TokenKeyFile holds the HS256 key shared with the platform.
	TokenKeyFile string `yaml:"token_key_file"`
}

// Database maps one of the platform's database ids to the worker's target
// that serves it.
type Database struct {
	ID     string `yaml:"id"`
	Target string `yaml:"target"`
}

// DefaultConfig returns every default of contract §8, without databases.
func DefaultConfig() Config {
	return Config{
		Listen:  "127.0.0.1:8480",
		NATS:    NATS{URL: "nats://127.0.0.1:4222", Prefix: client.DefaultPrefix},
		Auth:    Auth{TokenKeyFile: "./data/api-token.key"},
		Timeout: 30 * time.Second,
	}
}

// ConnSettings are the NATS login and TLS settings, as natsconn takes them.
func (n NATS) ConnSettings() natsconn.Settings {
	return natsconn.Settings{
		CredsFile: n.Credentials, NkeySeedFile: n.NkeySeedFile, User: n.User, Password: n.Password,
		TLS: natsconn.TLS{CAFile: n.TLS.CAFile, CertFile: n.TLS.CertFile, KeyFile: n.TLS.KeyFile},
	}
}

// ConnNames are the config keys of ConnSettings, for errors.
func ConnNames() natsconn.Names {
	return natsconn.Names{
		CredsFile: "nats.credentials", NkeySeedFile: "nats.nkey_seed_file", User: "nats.user",
		Password: "nats.password", CAFile: "nats.tls.ca_file", CertFile: "nats.tls.cert_file", KeyFile: "nats.tls.key_file",
	}
}

// Targets returns the database id → target map.
func (c *Config) Targets() map[string]string {
	m := make(map[string]string, len(c.Databases))
	for _, d := range c.Databases {
		m[d.ID] = d.Target
	}
	return m
}

// LoadConfig reads, parses (with the process environment) and validates
// the file at path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := ParseConfig(data, os.LookupEnv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes YAML over DefaultConfig, replacing ${NAME} in values
// with lookupEnv(NAME). Unknown keys and unset variables are errors: a
// misspelt key would otherwise silently keep its default. It does not
// validate; call Validate.
func ParseConfig(data []byte, lookupEnv func(string) (string, bool)) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg := DefaultConfig()
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return &cfg, nil
	}
	root := doc.Content[0]
	if err := checkNode(root, reflect.TypeFor[Config](), "", lookupEnv); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	// Decoding the checked, substituted tree keeps the YAML decoder's own
	// errors, which quote values, out of reach: a value may be a secret.
	if err := root.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &cfg, nil
}

var (
	envRef       = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)
	durationType = reflect.TypeFor[time.Duration]()
	secretType   = reflect.TypeFor[secret.Secret]()
)

// checkNode checks n against type t (known keys, shapes, durations) and
// substitutes ${NAME} in scalars, in place. Errors name the key path and
// line, never the value.
func checkNode(n *yaml.Node, t reflect.Type, path string, lookupEnv func(string) (string, bool)) error {
	if n.Kind == yaml.AliasNode {
		return fmt.Errorf("%s: line %d: YAML aliases are not supported here", orTop(path), n.Line)
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil
	}
	kind := t.Kind()
	if t == secretType {
		kind = reflect.String
	}
	switch kind {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%s: line %d: expected a mapping", orTop(path), n.Line)
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			fields[name] = f.Type
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			kp := k.Value
			if path != "" {
				kp = path + "." + k.Value
			}
			ft, ok := fields[k.Value]
			if !ok {
				return fmt.Errorf("%s: line %d: unknown key", kp, k.Line)
			}
			if seen[k.Value] {
				return fmt.Errorf("%s: line %d: key given twice", kp, k.Line)
			}
			seen[k.Value] = true
			if err := checkNode(v, ft, kp, lookupEnv); err != nil {
				return err
			}
		}
		return nil
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("%s: line %d: expected a list", path, n.Line)
		}
		for i, item := range n.Content {
			if err := checkNode(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), lookupEnv); err != nil {
				return err
			}
		}
		return nil
	case reflect.String, reflect.Int64:
		if n.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s: line %d: expected a single value", path, n.Line)
		}
		if err := substitute(n, path, lookupEnv); err != nil {
			return err
		}
		if t == durationType {
			if _, err := time.ParseDuration(n.Value); err != nil {
				return fmt.Errorf("%s: line %d: not a duration such as 30s or 2m", path, n.Line)
			}
		} else {
			// A number or a boolean where a string is wanted is taken as
			// written (a password "123456"), never re-read by YAML.
			n.Tag = "!!str"
		}
		return nil
	}
	return fmt.Errorf("%s: unsupported type %s", path, t)
}

// substitute replaces ${NAME} in a scalar with the variable's value.
func substitute(n *yaml.Node, path string, lookupEnv func(string) (string, bool)) error {
	if !strings.Contains(n.Value, "${") {
		return nil
	}
	var missing string
	n.Value = envRef.ReplaceAllStringFunc(n.Value, func(ref string) string {
		name := envRef.FindStringSubmatch(ref)[1]
		v, ok := lookupEnv(name)
		if !ok && missing == "" {
			missing = name
		}
		return v
	})
	if missing != "" {
		return fmt.Errorf("%s: environment variable %s is not set", path, missing)
	}
	return nil
}

func orTop(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

// databaseIDRe is the grammar of a platform database id: it is a URL path
// segment and a token's sub, so nothing that needs escaping.
var databaseIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)

var prefixRe = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Validate checks every rule and returns all violations joined, each
// naming its key.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{key}, args...)...))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		add("listen", "want host:port")
	}
	if c.NATS.URL == "" {
		add("nats.url", "must not be empty: the worker's NATS")
	} else if err := natsconn.CheckURLs(c.NATS.URL); err != nil {
		add("nats.url", "%v", err)
	}
	conn := c.NATS.ConnSettings()
	if err := conn.Validate(ConnNames()); err != nil {
		errs = append(errs, err)
	}
	if natsconn.URLHasUserInfo(c.NATS.URL) && conn.Authenticates() {
		add("nats.url", "holds a user, password or token, and another way to authenticate is set too: give one")
	}
	if !prefixRe.MatchString(c.NATS.Prefix) {
		add("nats.prefix", "must match %s", prefixRe)
	}
	if c.NATS.WorkerXKey != "" && !nkeys.IsValidPublicCurveKey(c.NATS.WorkerXKey) {
		add("nats.worker_xkey", "is not a curve public key (an nkeys xkey starting with X)")
	}
	if c.Auth.TokenKeyFile == "" {
		add("auth.token_key_file", "must not be empty")
	}
	if c.Timeout <= 0 {
		add("timeout", "must be positive, got %s", c.Timeout)
	}
	if len(c.Databases) == 0 {
		add("databases", "give at least one database: its id and the worker's target that serves it")
	}
	ids, targets := map[string]int{}, map[string]int{}
	for i, d := range c.Databases {
		key := fmt.Sprintf("databases[%d]", i)
		if !databaseIDRe.MatchString(d.ID) {
			add(key+".id", "%q must match %s", d.ID, databaseIDRe)
		} else if j, dup := ids[d.ID]; dup {
			add(key+".id", "%q is also databases[%d]", d.ID, j)
		} else {
			ids[d.ID] = i
		}
		if err := client.CheckTarget(d.Target); err != nil {
			add(key+".target", "%q must match ^[a-z0-9][a-z0-9_-]{0,62}$", d.Target)
		} else if j, dup := targets[d.Target]; dup {
			// Two ids on one target would let a token for either manage
			// the other's accounts: most likely a copy-paste mistake.
			add(key+".target", "%q already serves databases[%d]", d.Target, j)
		} else {
			targets[d.Target] = i
		}
	}
	return errors.Join(errs...)
}
