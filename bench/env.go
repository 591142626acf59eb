package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/internal/testdb"
	"github.com/salesos/salesos/migrations"
)

// env is the bench's private schema.
type env struct {
	baseURL       string
	schema        string
	url           string // baseURL with search_path set to schema
	admin         *sqlx.DB
	serverVersion string
}

// newEnv creates a schema with a random name and migrates it.
func newEnv(ctx context.Context, baseURL string) (_ *env, err error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	e := &env{baseURL: baseURL, schema: "bench_" + hex.EncodeToString(b[:])}
	if e.admin, err = sqlx.Open("pgx", baseURL); err != nil {
		return nil, err
	}
	e.admin.SetMaxOpenConns(2)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := e.admin.GetContext(cctx, &e.serverVersion, `SELECT version()`); err != nil {
		e.admin.Close()
		return nil, fmt.Errorf("database unreachable: %w", err)
	}
	if _, err := e.admin.ExecContext(cctx, `CREATE SCHEMA `+e.schema); err != nil {
		e.admin.Close()
		return nil, fmt.Errorf("create schema: %w", err)
	}
	defer func() {
		if err != nil {
			_ = e.drop()
		}
	}()
	if e.url, err = testdb.WithSearchPath(baseURL, e.schema); err != nil {
		return nil, err
	}
	db, err := sqlx.Open("pgx", e.url)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	res, err := migrations.Apply(cctx, db)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	logf("schema %s migrated to version %d", e.schema, res.Current)
	return e, nil
}

// drop removes the schema and everything in it. It runs on its own
// context so that it also works after an interrupt.
func (e *env) drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := e.admin.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+e.schema+` CASCADE`)
	e.admin.Close()
	if err != nil {
		return fmt.Errorf("drop schema %s: %w", e.schema, err)
	}
	logf("dropped schema %s", e.schema)
	return nil
}

// exec runs maintenance statements (VACUUM, CHECKPOINT) outside any
// transaction, in the bench schema.
func (e *env) exec(ctx context.Context, stmts ...string) error {
	conn, err := e.admin.Connx(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SET search_path TO `+e.schema); err != nil {
		return err
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `RESET search_path`)
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// reset empties every table of the schema but schema_migrations, so a
// measurement starts from an empty event log with every projection
// checkpoint at 0, whatever ran before it.
func (e *env) reset(ctx context.Context) error {
	var tables string
	if err := e.admin.GetContext(ctx, &tables, `
		SELECT COALESCE(string_agg(format('%I.%I', schemaname, tablename), ', '), '')
		FROM pg_tables WHERE schemaname = $1 AND tablename <> 'schema_migrations'`, e.schema); err != nil {
		return err
	}
	if tables == "" {
		return nil
	}
	_, err := e.admin.ExecContext(ctx, `TRUNCATE `+tables+` RESTART IDENTITY CASCADE`)
	return err
}
