package test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// secretName matches identifiers that hold a password or a DSN.
var secretName = regexp.MustCompile(`(?i)(password|passwd|dsn|^pw)$`)

// plainSecretsAllowed are the places where a password or DSN is a plain
// string on purpose, each with its reason. Keys are "file: name".
var plainSecretsAllowed = map[string]string{
	// The wire: a job's "password" field is the sealed password in base64,
	// which only its requester and the worker can open.
	"client/client.go: Password": "sealed, as sent in a job",
	// The CLI prints a generated password to its user: that is its job.
	"cmd/dbusers/commands.go: Password": "printed on purpose (contract §7)",
	"cmd/dbusers/rotate.go: Password":   "written to the rotation's credentials file on purpose",
	// The platform API hands a generated password out in one response
	// body (contract §8), which go-scalingo reads as a JSON string.
	"internal/platformapi/bodies.go: Password": "sent on purpose in its one response",
	// The prompt reads what the user types before it becomes a Secret.
	"cmd/dbusers/prompt.go: password": "read from the terminal, wrapped by its caller",
	// natsconn.Names holds the names of the settings, for messages.
	"internal/natsconn/natsconn.go: Password": "a setting's name, not its value",
	// The chosen-password rule checks a candidate; it never keeps or shows it.
	"client/errors.go: password": "CheckPassword's argument",
	"wire/rules.go: pw":          "CheckPassword's argument",
	// The benchmark's direct-SQL baseline and its test accounts.
	"cmd/dbusers-bench/": "measuring tool: test accounts on a local server",
	// Test fixtures create throwaway accounts.
	"internal/mysqltest/": "test fixtures",
}

// TestSecretsAreTyped is the static half of the secret hygiene: no struct
// field, parameter, result or variable named like a password or a DSN is a
// plain string in the non-test code, so fmt, JSON, YAML and the loggers
// redact it (secret.Secret). A new plain one fails here until it is a
// Secret or is listed above with its reason.
func TestSecretsAreTyped(t *testing.T) {
	t.Parallel()
	root := ".."
	fset := token.NewFileSet()
	var found []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if path != root && strings.HasPrefix(d.Name(), ".") || d.Name() == "test" || d.Name() == "data" || d.Name() == "bin" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			var names []*ast.Ident
			var typ ast.Expr
			switch n := n.(type) {
			case *ast.Field:
				names, typ = n.Names, n.Type
			case *ast.ValueSpec:
				names, typ = n.Names, n.Type
			default:
				return true
			}
			if !isString(typ) {
				return true
			}
			for _, id := range names {
				if !secretName.MatchString(id.Name) || allowedPlain(rel, id.Name) {
					continue
				}
				found = append(found, fset.Position(id.Pos()).String()+": "+id.Name+" is a plain string")
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range found {
		t.Error(f + "; make it a secret.Secret (or list it in plainSecretsAllowed with its reason)")
	}
}

func isString(e ast.Expr) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == "string"
}

func allowedPlain(rel, name string) bool {
	rel = filepath.ToSlash(rel)
	for k := range plainSecretsAllowed {
		if strings.HasSuffix(k, "/") && strings.HasPrefix(rel, k) {
			return true
		}
		if k == rel+": "+name {
			return true
		}
	}
	return false
}
