package mysqlops

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"time"
)

// legacyPatternTTL is how long the answer of sharedPattern holds: a
// database created later that the pattern matches is noticed within it.
const legacyPatternTTL = 30 * time.Second

// legacyPattern caches whether the target's database name, read as the
// pattern an unescaped grant makes of it, also matches another database.
type legacyPattern struct {
	mu     sync.Mutex
	shared bool
	at     time.Time
}

// sharedPattern reports whether a grant on the target's database name
// unescaped (`app_db`.*, where each _ matches any character) also reaches
// another database on the server. Such an account is not the target's
// alone: it is foreign, and never reset or dropped, since a reset would hand
// the other database to whoever asked. The databases known are those the
// admin can see and those any grant names; one nobody holds a grant on and
// the admin cannot see is not found (docs/SECURITY.md).
func (t *Target) sharedPattern(ctx context.Context) (bool, error) {
	if !strings.ContainsAny(t.database, "_%") {
		return false, nil // the name matches only itself
	}
	lp := &t.legacy
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if !lp.at.IsZero() && time.Since(lp.at) < legacyPatternTTL {
		return lp.shared, nil
	}
	// CHAR(92) is a backslash whatever the sql_mode (NO_BACKSLASH_ESCAPES).
	const q = `SELECT 1 FROM (
  SELECT SCHEMA_NAME AS name FROM information_schema.SCHEMATA
  UNION SELECT REPLACE(REPLACE(Db, CONCAT(CHAR(92), '_'), '_'), CONCAT(CHAR(92), '%'), '%') FROM mysql.db
  UNION SELECT Db FROM mysql.tables_priv
) AS known WHERE name LIKE ? AND BINARY name <> BINARY ? LIMIT 1`
	var one int
	err := t.db.QueryRowContext(ctx, q, t.database, t.database).Scan(&one)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		lp.shared = false
	case err != nil:
		return false, err
	default:
		lp.shared = true
	}
	lp.at = time.Now()
	return lp.shared, nil
}
