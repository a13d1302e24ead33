package mysqlops

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// This file parses the lines of SHOW GRANTS (MariaDB 10.11 and MySQL 8) and
// audits them against contract §5.7. The parser never keeps or returns the
// raw line: on MariaDB a line can carry the account's password hash
// (IDENTIFIED BY PASSWORD '*…'), so everything shown is rebuilt from the
// identifiers and privilege names it parsed.

// tokKind is the kind of a SHOW GRANTS token.
type tokKind int

const (
	tWord   tokKind = iota // an unquoted word, upper-cased: GRANT, SELECT, ON
	tIdent                 // a quoted identifier (backticks, or double quotes under ANSI_QUOTES), unquoted
	tString                // a single-quoted string, unquoted
	tPunct                 // one of , . ( ) * @
)

type token struct {
	kind tokKind
	text string
	// raw is a word as written (text is upper-cased): a plugin name.
	raw string
	// plain: a quoted token held no escape and no doubled quote, so its
	// text is byte for byte what was written between the quotes.
	plain bool
}

func (t token) is(kind tokKind, text string) bool { return t.kind == kind && t.text == text }

// tokenize splits a SHOW GRANTS line. Its only error, an unterminated
// quote, never quotes the line.
func tokenize(line string) ([]token, error) {
	var toks []token
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '`' || c == '"' || c == '\'':
			s, n, err := unquote(line[i:], c)
			if err != nil {
				return nil, err
			}
			kind := tIdent
			if c == '\'' {
				kind = tString
			}
			toks = append(toks, token{kind: kind, text: s, plain: n == len(s)+2})
			i += n
		case strings.IndexByte(",.()*@", c) >= 0:
			toks = append(toks, token{kind: tPunct, text: string(c)})
			i++
		case isWordByte(c):
			j := i
			for j < len(line) && isWordByte(line[j]) {
				j++
			}
			toks = append(toks, token{kind: tWord, text: strings.ToUpper(line[i:j]), raw: line[i:j]})
			i = j
		default:
			// Anything else (=, /, …) can only come after the grantee,
			// where nothing is read but the options.
			toks = append(toks, token{kind: tPunct, text: string(c)})
			i++
		}
	}
	return toks, nil
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// unquote reads a quoted token at the start of s: the quote doubled stands
// for itself; in a single-quoted string a backslash escapes the next byte.
// It returns the content and the bytes consumed.
func unquote(s string, q byte) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch {
		case s[i] == '\\' && q == '\'' && i+1 < len(s):
			b.WriteByte(s[i+1])
			i++
		case s[i] == q && i+1 < len(s) && s[i+1] == q:
			b.WriteByte(q)
			i++
		case s[i] == q:
			return b.String(), i + 1, nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", 0, errors.New("unterminated quote")
}

// principal is an account, a role or PUBLIC as SHOW GRANTS names it.
type principal struct {
	user, host string
	hasHost    bool // MySQL roles and every account: `u`@`h`; MariaDB roles: `r`
	public     bool // MariaDB's PUBLIC
}

// String quotes the principal with backticks, as both servers accept it
// in GRANT and REVOKE; an empty user or host (the anonymous account of
// GRANT PROXY) is written as an empty string literal.
func (p principal) String() string {
	if p.public {
		return "PUBLIC"
	}
	if !p.hasHost {
		return quoteName(p.user)
	}
	return quoteName(p.user) + "@" + quoteName(p.host)
}

func quoteName(s string) string {
	if s == "" {
		return "''"
	}
	return quoteIdent(s)
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// level is what a privilege line applies to.
type level int

const (
	levelGlobal   level = iota + 1 // ON *.*
	levelDatabase                  // ON `db`.* (the name is a pattern)
	levelTable                     // ON `db`.`table` (also column privileges)
	levelRoutine                   // ON FUNCTION|PROCEDURE|PACKAGE [BODY] `db`.`name`
	levelProxy                     // GRANT PROXY ON 'u'@'h'
	levelRole                      // GRANT `role`[, …] TO …
)

// grant is one parsed line of SHOW GRANTS.
type grant struct {
	level      level
	privileges []string // upper-case names, a column list kept as "SELECT (`c`)"; empty for a role grant
	database   string   // as printed: a pattern at levelDatabase, a name at table and routine level
	object     string   // table or routine name
	routine    string   // FUNCTION, PROCEDURE, PACKAGE or PACKAGE BODY
	roles      []principal
	proxied    principal
	grantee    principal
	// grantOption is WITH GRANT OPTION; adminOption is WITH ADMIN OPTION
	// (a role the grantee may grant on).
	grantOption, adminOption bool
	// methods is how many authentication methods the line names after
	// IDENTIFIED (MariaDB's USAGE line; more than one when an old
	// password is kept beside the current one); 0 when it names none.
	methods int
	// current is the first of them, the credential in force, when the
	// line shows it whole (currentKnown). Never printed.
	current      Credential
	currentKnown bool
}

// on renders the object of a privilege line, for messages and REVOKE.
func (g grant) on() string {
	switch g.level {
	case levelGlobal:
		return "*.*"
	case levelDatabase:
		return quoteIdent(g.database) + ".*"
	case levelTable:
		return quoteIdent(g.database) + "." + quoteIdent(g.object)
	case levelRoutine:
		return g.routine + " " + quoteIdent(g.database) + "." + quoteIdent(g.object)
	case levelProxy:
		return g.proxied.String()
	}
	return ""
}

// skipLine reports whether a SHOW GRANTS line grants nothing: MariaDB's
// SET DEFAULT ROLE, and MySQL 8's partial revokes (REVOKE … ON `db`.*), which
// only take privileges away; ignoring them can only over-report.
func skipLine(line string) bool {
	l := strings.ToUpper(strings.TrimSpace(line))
	return l == "" || strings.HasPrefix(l, "SET DEFAULT ROLE") || strings.HasPrefix(l, "REVOKE ")
}

// parseGrant parses one GRANT line of SHOW GRANTS. Its errors never quote
// the line.
func parseGrant(line string) (grant, error) {
	var g grant
	toks, err := tokenize(line)
	if err != nil {
		return g, err
	}
	p := &parser{toks: toks}
	if !p.word("GRANT") {
		return g, errors.New("not a GRANT line")
	}
	// The privilege list (or the roles) runs to ON or TO at depth 0.
	var items [][]token
	var cur []token
	depth := 0
	for {
		t, ok := p.next()
		if !ok {
			return g, errors.New("no ON or TO")
		}
		if depth == 0 && t.kind == tWord && (t.text == "ON" || t.text == "TO") {
			items = append(items, cur)
			p.back()
			break
		}
		switch {
		case t.is(tPunct, "("):
			depth++
		case t.is(tPunct, ")"):
			depth--
		}
		if depth == 0 && t.is(tPunct, ",") {
			items = append(items, cur)
			cur = nil
			continue
		}
		cur = append(cur, t)
	}
	if p.word("TO") {
		g.level = levelRole
		for _, it := range items {
			r, err := principalOf(it)
			if err != nil {
				return g, fmt.Errorf("role: %w", err)
			}
			g.roles = append(g.roles, r)
		}
	} else {
		p.word("ON")
		for _, it := range items {
			name, err := privilegeOf(it)
			if err != nil {
				return g, err
			}
			g.privileges = append(g.privileges, name)
		}
		if err := p.object(&g); err != nil {
			return g, err
		}
		if !p.word("TO") {
			return g, errors.New("no TO after the object")
		}
	}
	// The grantee, then options. The authentication methods (IDENTIFIED
	// BY PASSWORD '…', IDENTIFIED VIA … OR …) are counted, their hashes
	// dropped; the rest (REQUIRE …, resource limits) is passed over.
	g.grantee, err = p.principal()
	if err != nil {
		return g, fmt.Errorf("grantee: %w", err)
	}
	if g.methods, g.current, g.currentKnown, err = authMethods(p.toks[p.i:]); err != nil {
		return g, err
	}
	for i := p.i; i+1 < len(p.toks); i++ {
		a, b := p.toks[i], p.toks[i+1]
		if a.kind == tWord && b.is(tWord, "OPTION") {
			switch a.text {
			case "GRANT":
				g.grantOption = true
			case "ADMIN":
				g.adminOption = true
			}
		}
	}
	return g, nil
}

// privilegeOf turns the tokens of one privilege into its name: words
// joined by one space, upper-case, ALL spelt ALL PRIVILEGES, a column list
// kept in backticks.
func privilegeOf(toks []token) (string, error) {
	var words []string
	var cols []string
	inCols := false
	for _, t := range toks {
		switch {
		case t.is(tPunct, "("):
			inCols = true
		case t.is(tPunct, ")"):
			inCols = false
		case inCols && t.is(tPunct, ","):
		case inCols && (t.kind == tIdent || t.kind == tWord):
			cols = append(cols, quoteIdent(t.text))
		case !inCols && t.kind == tWord:
			words = append(words, t.text)
		default:
			return "", errors.New("malformed privilege list")
		}
	}
	if len(words) == 0 {
		return "", errors.New("empty privilege")
	}
	name := strings.Join(words, " ")
	if name == "ALL" {
		name = "ALL PRIVILEGES"
	}
	if len(cols) > 0 {
		name += " (" + strings.Join(cols, ", ") + ")"
	}
	return name, nil
}

// baseName is a privilege name without its column list.
func baseName(priv string) string {
	name, _, _ := strings.Cut(priv, " (")
	return name
}

// principalOf reads a whole token list as one principal.
func principalOf(toks []token) (principal, error) {
	p := &parser{toks: toks}
	pr, err := p.principal()
	if err == nil && p.i != len(toks) {
		err = errors.New("trailing tokens")
	}
	return pr, err
}

type parser struct {
	toks []token
	i    int
}

func (p *parser) next() (token, bool) {
	if p.i >= len(p.toks) {
		return token{}, false
	}
	p.i++
	return p.toks[p.i-1], true
}

func (p *parser) back() { p.i-- }

func (p *parser) peek() (token, bool) {
	if p.i >= len(p.toks) {
		return token{}, false
	}
	return p.toks[p.i], true
}

// word consumes the word w if it comes next.
func (p *parser) word(w string) bool {
	if t, ok := p.peek(); ok && t.is(tWord, w) {
		p.i++
		return true
	}
	return false
}

// name consumes an identifier (quoted, or a bare word).
func (p *parser) name() (string, error) {
	t, ok := p.next()
	if !ok || (t.kind != tIdent && t.kind != tWord && t.kind != tString) {
		return "", errors.New("expected a name")
	}
	return t.text, nil
}

// principal reads `user`@`host`, 'user'@'host', `role` or PUBLIC.
func (p *parser) principal() (principal, error) {
	var pr principal
	t, ok := p.next()
	if !ok {
		return pr, errors.New("missing")
	}
	switch {
	case t.is(tWord, "PUBLIC"):
		pr.public = true
		return pr, nil
	case t.kind == tIdent || t.kind == tString || t.kind == tWord:
		pr.user = t.text
	default:
		return pr, errors.New("expected a user or role name")
	}
	if n, ok := p.peek(); ok && n.is(tPunct, "@") {
		p.i++
		h, ok := p.next()
		if !ok || (h.kind != tIdent && h.kind != tString && h.kind != tWord) {
			return pr, errors.New("expected a host")
		}
		pr.host, pr.hasHost = h.text, true
	}
	return pr, nil
}

// object reads what follows ON: *.*, `db`.*, `db`.`t`, a routine, or the
// proxied account of GRANT PROXY.
func (p *parser) object(g *grant) error {
	if len(g.privileges) == 1 && g.privileges[0] == "PROXY" {
		pr, err := p.principal()
		if err != nil {
			return fmt.Errorf("proxied account: %w", err)
		}
		g.level, g.proxied = levelProxy, pr
		return nil
	}
	for _, kw := range []string{"FUNCTION", "PROCEDURE", "PACKAGE"} {
		if p.word(kw) {
			g.routine = kw
			if kw == "PACKAGE" && p.word("BODY") {
				g.routine = "PACKAGE BODY"
			}
		}
	}
	t, ok := p.peek()
	if !ok {
		return errors.New("missing object")
	}
	if t.is(tPunct, "*") {
		p.i++
		if !p.dot() || !p.star() {
			return errors.New("expected *.*")
		}
		g.level = levelGlobal
		return nil
	}
	db, err := p.name()
	if err != nil {
		return err
	}
	if !p.dot() {
		return errors.New("expected a qualified object")
	}
	g.database = db
	if p.star() {
		if g.routine != "" {
			return errors.New("a routine grant on db.*")
		}
		g.level = levelDatabase
		return nil
	}
	if g.object, err = p.name(); err != nil {
		return err
	}
	g.level = levelTable
	if g.routine != "" {
		g.level = levelRoutine
	}
	return nil
}

func (p *parser) dot() bool  { return p.punct(".") }
func (p *parser) star() bool { return p.punct("*") }

func (p *parser) punct(s string) bool {
	if t, ok := p.peek(); ok && t.is(tPunct, s) {
		p.i++
		return true
	}
	return false
}

// Excess is what the admin account holds beyond contract §5.7 on one object
// (or one grant of a role, or one unreadable grant line).
type Excess struct {
	// What names the privileges and the object, e.g. "FILE, SUPER ON *.*".
	What string
	// Via is the role the account holds it through, "" when granted to the
	// account itself.
	Via string
	// Why explains the excess when the names alone do not.
	Why string
	// Fix lists the statements that remove it.
	Fix []string
}

// String is the excess in one phrase, for errors and logs.
func (e Excess) String() string {
	s := e.What
	if e.Via != "" {
		s += " (through role " + e.Via + ")"
	}
	if e.Why != "" {
		s += " (" + e.Why + ")"
	}
	return s
}

// allowedGlobal are the global privileges of contract §5.7; USAGE is none.
var allowedGlobal = map[string]bool{
	"USAGE": true, "CREATE USER": true, "PROCESS": true,
	"CONNECTION ADMIN": true, // MariaDB
	"CONNECTION_ADMIN": true, // MySQL 8
}

// auditGrant returns what one line grants beyond contract §5.7 for the
// databases dbs (unescaped), or ok=false when it grants nothing more. dbs
// is the target's database, then those of the worker's other targets that
// log in to the same server as the same admin account: an admin shared by
// several targets needs each one's database, and holding them is within
// §5.7 for every one of them. fl spells the fix for the server family.
func auditGrant(g grant, dbs []string, fl flavor) (Excess, bool) {
	grantee := g.grantee.String()
	revoke := func(privs []string) []string {
		if slices.Contains(privs, "ALL PRIVILEGES") {
			// REVOKE ALL … cannot name GRANT OPTION beside it on an object.
			fix := []string{"REVOKE ALL PRIVILEGES ON " + g.on() + " FROM " + grantee}
			if g.grantOption {
				fix = append(fix, "REVOKE GRANT OPTION ON "+g.on()+" FROM "+grantee)
			}
			return fix
		}
		if g.grantOption {
			privs = append(privs, "GRANT OPTION")
		}
		return []string{"REVOKE " + strings.Join(privs, ", ") + " ON " + g.on() + " FROM " + grantee}
	}
	beyond := func(allowed func(string) bool) []string {
		var out []string
		for _, p := range g.privileges {
			if !allowed(baseName(p)) {
				out = append(out, p)
			}
		}
		return out
	}
	what := func(privs []string) string {
		shown := slices.Clone(privs)
		if g.grantOption {
			shown = append(shown, "GRANT OPTION")
		}
		return strings.Join(shown, ", ") + " ON " + g.on()
	}
	onlySelect := func(p string) bool { return p == "SELECT" }

	switch g.level {
	case levelRole:
		if !g.adminOption {
			return Excess{}, false // the role's own grants are audited
		}
		names := make([]string, len(g.roles))
		for i, r := range g.roles {
			names[i] = r.String()
		}
		role := strings.Join(names, ", ")
		fix := "REVOKE ADMIN OPTION FOR " + role + " FROM " + grantee
		if fl == flavorMySQL {
			fix = "REVOKE " + role + " FROM " + grantee + "; GRANT " + role + " TO " + grantee
		}
		return Excess{What: "ADMIN OPTION for role " + role, Why: "it may grant the role to any account",
			Fix: []string{fix}}, true
	case levelProxy:
		return Excess{What: "PROXY ON " + g.on(), Why: "it may log in as another account",
			Fix: []string{"REVOKE PROXY ON " + g.on() + " FROM " + grantee}}, true
	case levelGlobal:
		extra := beyond(func(p string) bool { return allowedGlobal[p] })
		if len(extra) == 0 && !g.grantOption {
			return Excess{}, false
		}
		e := Excess{What: what(extra), Fix: revoke(extra)}
		if slices.Contains(extra, "ALL PRIVILEGES") {
			// REVOKE ALL ON *.* also takes what the worker needs: give it back.
			e.Fix = append(e.Fix, "GRANT CREATE USER, PROCESS, "+connectionAdmin(fl)+" ON *.* TO "+grantee)
		}
		return e, true
	case levelDatabase:
		if slices.ContainsFunc(dbs, func(db string) bool { return g.database == escapePattern(db) }) {
			return Excess{}, false // a served database: anything, with GRANT OPTION
		}
		if g.database == "mysql" {
			extra := beyond(onlySelect)
			if len(extra) == 0 && !g.grantOption {
				return Excess{}, false
			}
			return Excess{What: what(extra), Fix: revoke(extra)}, true
		}
		e := Excess{What: what(g.privileges), Fix: revoke(g.privileges)}
		if i := slices.Index(dbs, g.database); i >= 0 {
			// The unescaped name is a pattern: each _ matches any character.
			esc := quoteIdent(escapePattern(dbs[i]))
			e.Why = "the unescaped name is a pattern that also matches other databases; grant on " + esc + ".* instead"
			e.Fix = append(e.Fix, "GRANT ALL PRIVILEGES ON "+esc+".* TO "+grantee+" WITH GRANT OPTION")
		}
		return e, true
	case levelTable, levelRoutine:
		switch {
		case slices.Contains(dbs, g.database):
			return Excess{}, false
		case g.database == "mysql" && g.level == levelTable:
			extra := beyond(onlySelect)
			if len(extra) == 0 && !g.grantOption {
				return Excess{}, false
			}
			return Excess{What: what(extra), Fix: revoke(extra)}, true
		}
		return Excess{What: what(g.privileges), Fix: revoke(g.privileges)}, true
	}
	return Excess{}, false
}

// connectionAdmin is the name of the privilege that ends other accounts'
// sessions.
func connectionAdmin(fl flavor) string {
	if fl == flavorMySQL {
		return "CONNECTION_ADMIN"
	}
	return "CONNECTION ADMIN"
}
