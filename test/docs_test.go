package test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocs keeps the README a page of a few screens and the docs inside
// the repository: a clone must find every page a link names, nothing may
// point at a sibling directory outside the repository, and the docs say
// why, not which issue asked.
func TestDocs(t *testing.T) {
	files := []string{filepath.Join("..", "README.md")}
	docs, err := filepath.Glob(filepath.Join("..", "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) == 0 {
		t.Fatal("no docs/*.md found: is the test run from test/?")
	}
	files = append(files, docs...)

	checks := []struct {
		name  string
		check func(path, text string) []string
	}{
		{"README fits a few screens", func(path, text string) []string {
			if filepath.Base(path) != "README.md" {
				return nil
			}
			if n := strings.Count(text, "\n"); n > maxReadmeLines {
				return []string{fmt.Sprintf("%d lines, more than %d: move the detail into docs/", n, maxReadmeLines)}
			}
			return nil
		}},
		{"nothing outside the repository", func(path, text string) []string {
			return matchingLines(text, regexp.MustCompile(regexp.QuoteMeta("../shared")),
				"names ../shared, which a clone does not have")
		}},
		{"no issue numbers", func(path, text string) []string {
			return matchingLines(text, issueRef, "cites an issue number: say why instead")
		}},
		{"relative .md links exist", func(path, text string) []string {
			var bad []string
			for _, target := range mdLinks(text) {
				if _, err := os.Stat(filepath.Join(filepath.Dir(path), filepath.FromSlash(target))); err != nil {
					bad = append(bad, fmt.Sprintf("links to %s, which does not exist", target))
				}
			}
			return bad
		}},
	}

	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			for _, path := range files {
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				for _, problem := range c.check(path, string(data)) {
					t.Errorf("%s: %s", path, problem)
				}
			}
		})
	}
}

// maxReadmeLines bounds README.md: a page that fits a few screens.
const maxReadmeLines = 200

// issueRef matches a citation of an issue by its number: the word issue
// (or Issue), an optional "#" and digits, or "(#" digits ")". The samples
// in TestDocsChecksCatch are split so that the pattern itself finds none
// in this file.
var issueRef = regexp.MustCompile(`[Ii]ssue #?[0-9]+|\(#[0-9]+\)`)

// linkRe matches an inline Markdown link's target, and refRe a reference
// definition's ("[name]: target").
var (
	linkRe = regexp.MustCompile(`\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	refRe  = regexp.MustCompile(`(?m)^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)`)
)

// mdLinks returns the relative links of text to .md files, without their
// #fragment.
func mdLinks(text string) []string {
	var out []string
	var found []string
	for _, m := range linkRe.FindAllStringSubmatch(text, -1) {
		found = append(found, m[1])
	}
	for _, m := range refRe.FindAllStringSubmatch(text, -1) {
		found = append(found, m[1])
	}
	for _, target := range found {
		if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") || strings.HasPrefix(target, "/") {
			continue
		}
		target, _, _ = strings.Cut(target, "#")
		if strings.HasSuffix(strings.ToLower(target), ".md") {
			out = append(out, target)
		}
	}
	return out
}

// matchingLines reports each line of text that re matches, with its
// number.
func matchingLines(text string, re *regexp.Regexp, what string) []string {
	var out []string
	for i, line := range strings.Split(text, "\n") {
		if m := re.FindString(line); m != "" {
			out = append(out, fmt.Sprintf("line %d %s (%q)", i+1, what, m))
		}
	}
	return out
}

// TestDocsChecksCatch proves the checks of TestDocs see what they must:
// each sample breaks exactly the rule it names.
func TestDocsChecksCatch(t *testing.T) {
	cases := []struct {
		name  string
		text  string
		issue bool
		links []string
	}{
		{"issue by number", "Before this (issue " + "11) it was slow.", true, nil},
		{"issue with hash", "## Not built (Issue #" + "6 leaves them out)", true, nil},
		{"pull request number", "fixed the flood (#" + "12) here", true, nil},
		{"the word alone", "a known issue, and issues in general", false, nil},
		{"inline link", "see [the protocol](protocol.md#jobs) and [x](https://e.org/a.md)", false, []string{"protocol.md"}},
		{"reference link", "[p]: ../docs/missing.md\n", false, []string{"../docs/missing.md"}},
		{"not markdown", "[config](../deploy/dev.yaml)", false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := issueRef.MatchString(c.text); got != c.issue {
				t.Errorf("issue reference found = %v, want %v", got, c.issue)
			}
			if got := mdLinks(c.text); strings.Join(got, " ") != strings.Join(c.links, " ") {
				t.Errorf("links = %q, want %q", got, c.links)
			}
		})
	}
}
