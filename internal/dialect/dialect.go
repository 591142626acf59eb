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

// DriverNamer is satisfied by *sqlx.DB, *sqlx.Tx and *sqlx.Conn.
type DriverNamer interface{ DriverName() string }

// SQLiteDriver is the database/sql driver name of modernc.org/sqlite.
const SQLiteDriver = "sqlite"

// IsSQLite reports whether db talks to SQLite.
func IsSQLite(db DriverNamer) bool { return db.DriverName() == SQLiteDriver }
