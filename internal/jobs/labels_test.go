package jobs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestObserverLabelsAreListed: every label value the package's code passes
// to its Observer as a literal (a hand-back's reason, a JobDone outcome) is
// one that AllOps, Outcomes, HandBackReasons and the others list, so that the
// metrics created up front are the ones that later count.
func TestObserverLabelsAreListed(t *testing.T) {
	t.Parallel()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, e.Name(), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	// Which argument of which call is a label, and the values it may take.
	calls := map[string]struct {
		arg  int
		want []string
	}{
		"handBack":   {0, HandBackReasons()},
		"HandedBack": {0, HandBackReasons()},
		"JobDone":    {1, Outcomes()},
	}
	seen := map[string]int{}
	for _, file := range files {
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			c, ok := calls[sel.Sel.Name]
			if !ok || len(call.Args) <= c.arg {
				return true
			}
			lit, ok := call.Args[c.arg].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true // a variable: its values are checked where it is set
			}
			v, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			seen[sel.Sel.Name]++
			if !slices.Contains(c.want, v) {
				t.Errorf("%s: %s(…, %q, …) is not in the list of its label's values (labels.go)", fset.Position(lit.Pos()), sel.Sel.Name, v)
			}
			return true
		})
	}
	// The scan found the calls it is about: a renamed method would
	// otherwise pass this test with nothing checked.
	if seen["handBack"] < len(HandBackReasons()) || seen["JobDone"] == 0 {
		t.Fatalf("found %d handBack and %d JobDone calls with literal labels; the scan no longer sees the worker's calls", seen["handBack"], seen["JobDone"])
	}
}
