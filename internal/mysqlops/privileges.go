package mysqlops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// PrivilegeCheck configures the check of a target's admin account against
// contract §5.7: CREATE USER, PROCESS and CONNECTION ADMIN (MySQL 8:
// CONNECTION_ADMIN) globally, SELECT on the mysql schema, and anything on
// the target's database (escaped, so that the grant reaches no other
// database) and on the SharedDatabases. Everything else is excess: other
// global privileges, GRANT OPTION on *.*, other privileges on mysql, any
// privilege on another schema (including an unescaped pattern of a served
// database's name that matches others), PROXY, ADMIN OPTION on a role,
// and a grant line the parser does not understand. The grants of the account's roles (granted
// to it, active or not) count as its own.
type PrivilegeCheck struct {
	// Enabled makes the target check before its first operation, and
	// refuse every operation while the check finds excess (or cannot run).
	Enabled bool
	// AllowExcess lets the target work despite excess; the check still
	// reports it.
	AllowExcess bool
	// SharedDatabases are the databases (unescaped) of the worker's other
	// targets that log in to the same server as the same admin account.
	// That account must hold each one's privileges for its own target, so
	// they are within §5.7 here too; any other database stays excess.
	SharedDatabases []string
	// Recheck is how long a passed check holds: then the next operation
	// (or CheckReady) runs it again, so that a privilege granted to the
	// admin later is found. Zero: a pass holds until the process ends.
	Recheck time.Duration
	// Observe, when set, is called when a check that the target runs on its
	// own (before an operation or in CheckReady, not through
	// VerifyPrivileges) read the grants and its outcome changed, and
	// before an operation for every refusal: err is nil, or the
	// *ExcessError that refuses the target.
	Observe func(report PrivilegeReport, err error)
}

// PrivilegeReport is the outcome of one privilege check.
type PrivilegeReport struct {
	// Account is the admin account as CURRENT_USER() names it, quoted:
	// `dbusers_admin`@`%`.
	Account string
	// Excess is what it holds beyond contract §5.7; empty when nothing.
	Excess []Excess
}

// ExcessError refuses a target whose admin account holds privileges beyond
// contract §5.7. Its message names the account, each excess privilege and
// the statements that remove them.
type ExcessError struct {
	Report PrivilegeReport
}

func (e *ExcessError) Error() string {
	var what, fix []string
	for _, x := range e.Report.Excess {
		what = append(what, x.String())
		fix = append(fix, x.Fix...)
	}
	return fmt.Sprintf("the admin account %s holds privileges beyond contract §5.7, so the worker refuses to use it: %s; "+
		"revoke them (%s) or set allow_excess_privileges: true on the target",
		e.Report.Account, strings.Join(what, "; "), strings.Join(fix, "; "))
}

// maxRoles bounds how many roles a check follows.
const maxRoles = 16

// VerifyPrivileges runs the privilege check now and records its outcome: a
// target that passed (or whose excess is allowed) runs its operations
// without checking again until PrivilegeCheck.Recheck has passed; a
// refused one checks again before each operation. It returns the report
// and, when the target is refused, an *ExcessError; an error reading the
// grants leaves the target unchecked.
func (t *Target) VerifyPrivileges(ctx context.Context) (PrivilegeReport, error) {
	t.privMu.Lock()
	defer t.privMu.Unlock()
	return t.verifyLocked(ctx)
}

func (t *Target) verifyLocked(ctx context.Context) (PrivilegeReport, error) {
	fl, err := t.detectFlavor(ctx)
	if err != nil {
		return PrivilegeReport{}, err
	}
	rep, err := t.readPrivileges(ctx, fl)
	if err != nil {
		return rep, err
	}
	if len(rep.Excess) > 0 && !t.privCheck.AllowExcess {
		t.privOK = false
		return rep, &ExcessError{Report: rep}
	}
	t.privOK, t.privAt = true, time.Now()
	return rep, nil
}

// privilegeGate holds an operation back until the privilege check passed.
func (t *Target) privilegeGate(ctx context.Context) error {
	return t.ensurePrivileges(ctx, true)
}

// CheckReady reports whether the target can run jobs now: its server
// answers and its admin account's privilege check passed (or its excess
// is allowed) and is not due again. A refusal is only returned, not
// observed: it is logged when a job or the start finds it, and a
// readiness probe polls often.
func (t *Target) CheckReady(ctx context.Context) error {
	if err := t.Ping(ctx); err != nil {
		return fmt.Errorf("MySQL does not answer: %w", err)
	}
	return t.ensurePrivileges(ctx, false)
}

// ensurePrivileges runs the privilege check unless it passed less than
// Recheck ago. A change of outcome is observed (a first pass, a pass after
// a refusal, a refusal found by a recheck), and with observeRefusals every
// refusal. A recheck that cannot read the grants keeps a target that had
// passed working: it is tried again at the next operation.
func (t *Target) ensurePrivileges(ctx context.Context, observeRefusals bool) error {
	if !t.privCheck.Enabled {
		return nil
	}
	t.privMu.Lock()
	defer t.privMu.Unlock()
	wasOK := t.privOK
	if wasOK && (t.privCheck.Recheck <= 0 || time.Since(t.privAt) < t.privCheck.Recheck) {
		return nil
	}
	rep, err := t.verifyLocked(ctx)
	var excess *ExcessError
	refused := errors.As(err, &excess)
	if err != nil && !refused {
		if wasOK {
			return nil
		}
		return fmt.Errorf("check the admin account's privileges: %w", err)
	}
	if t.privCheck.Observe != nil && (wasOK == refused || (refused && observeRefusals)) {
		t.privCheck.Observe(rep, err)
	}
	return err
}

// readPrivileges reads the admin account's grants, and those of its roles,
// and audits them for the target's database.
func (t *Target) readPrivileges(ctx context.Context, fl flavor) (PrivilegeReport, error) {
	var rep PrivilegeReport
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	var current string
	if err := t.db.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&current); err != nil {
		return rep, fmt.Errorf("read the admin account's name: %w", err)
	}
	user, host, _ := cutLast(current, "@")
	rep.Account = principal{user: user, host: host, hasHost: true}.String()

	type pending struct {
		who principal
		via string
	}
	queue := []pending{{who: principal{user: user, host: host, hasHost: true}}}
	seen := map[string]bool{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		query := "SHOW GRANTS FOR CURRENT_USER"
		if p.via != "" {
			if seen[p.who.String()] {
				continue
			}
			if len(seen) == maxRoles {
				rep.Excess = append(rep.Excess, Excess{What: "more roles than the check follows",
					Via: p.via, Why: fmt.Sprintf("over %d roles", maxRoles),
					Fix: []string{"grant the admin account its privileges directly, not through nested roles"}})
				break
			}
			seen[p.who.String()] = true
			query = "SHOW GRANTS FOR " + p.who.String()
		}
		lines, err := showGrants(ctx, t, query)
		if err != nil {
			return rep, err
		}
		excess, roles := auditLines(lines, p.who, p.via, t.servedDatabases(), fl)
		rep.Excess = append(rep.Excess, excess...)
		for _, r := range roles {
			queue = append(queue, pending{who: r, via: r.String()})
		}
	}
	return rep, nil
}

// servedDatabases are the databases whose privileges the admin account
// may hold: the target's, then the shared ones.
func (t *Target) servedDatabases() []string {
	return append([]string{t.database}, t.privCheck.SharedDatabases...)
}

// auditLines audits the SHOW GRANTS lines of who (an account, or the role
// via which the account holds them) for the served databases dbs, and
// returns the excess and the roles granted to who.
func auditLines(lines []string, who principal, via string, dbs []string, fl flavor) ([]Excess, []principal) {
	var excess []Excess
	var roles []principal
	for i, line := range lines {
		if skipLine(line) {
			continue
		}
		g, err := parseGrant(line)
		if err != nil {
			excess = append(excess, Excess{
				What: fmt.Sprintf("a grant the worker cannot read (line %d of SHOW GRANTS FOR %s, not shown: it can carry a password hash)", i+1, who),
				Via:  via,
				Fix:  []string{"SHOW GRANTS FOR " + who.String() + ", and revoke what contract §5.7 does not list"},
			})
			continue
		}
		if x, ok := auditGrant(g, dbs, fl); ok {
			x.Via = via
			excess = append(excess, x)
		}
		if g.level == levelRole {
			roles = append(roles, g.roles...)
		}
	}
	return excess, roles
}

func showGrants(ctx context.Context, t *Target, query string) ([]string, error) {
	rows, err := t.db.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("read the admin account's grants: %w", err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			return nil, fmt.Errorf("read the admin account's grants: %w", err)
		}
		lines = append(lines, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the admin account's grants: %w", err)
	}
	return lines, nil
}

// cutLast splits s around the last sep (a user name may hold '@', a host
// may not).
func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}
