// Package dialect tells apart the two SQL databases the query side of
// SalesOS runs on: PostgreSQL (driver "pgx") and the embedded SQLite file
// (driver "sqlite", see eventstore/sqlite.OpenDB).
//
// Most statements are written once and run on both: "$1" placeholders
// (modernc.org/sqlite binds them by number), ON CONFLICT ... DO UPDATE,
// RETURNING, and times passed in from Go rather than now(). Where the two
// differ (arrays, row locks, advisory locks), a package keeps one statement
// per dialect side by side and picks with IsSQLite.
package dialect

import (
	"encoding/json"
	"fmt"
)

// DriverNamer is satisfied by *sqlx.DB, *sqlx.Tx and *sqlx.Conn.
type DriverNamer interface{ DriverName() string }

// SQLiteDriver is the database/sql driver name of modernc.org/sqlite.
const SQLiteDriver = "sqlite"

// IsSQLite reports whether db talks to SQLite.
func IsSQLite(db DriverNamer) bool { return db.DriverName() == SQLiteDriver }

// InList returns the condition "col is one of list", with list bound as
// parameter $n, and the argument to bind: a text[] compared with = ANY on
// PostgreSQL; on SQLite, which has no arrays, a JSON array read with
// json_each.
func InList(db DriverNamer, col string, n int, list []string) (cond string, arg any, err error) {
	if !IsSQLite(db) {
		return fmt.Sprintf(`%s = ANY($%d)`, col, n), list, nil
	}
	raw, err := JSONList(list)
	return fmt.Sprintf(`%s IN (SELECT value FROM json_each($%d))`, col, n), raw, err
}

// JSONList is list as a JSON array (never null), for SQLite parameters and
// TEXT columns holding lists.
func JSONList(list []string) (string, error) {
	if list == nil {
		list = []string{}
	}
	raw, err := json.Marshal(list)
	return string(raw), err
}
