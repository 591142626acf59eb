package pgcluster_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/salesos/salesos/internal/pgcluster"
)

// One cluster through its whole life: the fault suite relies on each step,
// and on Close leaving nothing behind.
func TestClusterLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := pgcluster.New(ctx, pgcluster.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Port() == 5432 {
		t.Fatal("the private cluster must never use the shared port 5432")
	}
	url, err := c.CreateDatabase(ctx, "lifecycle")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (1)"); err != nil {
		t.Fatal(err)
	}

	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	// A restart in fast mode ends every session: the old connection is dead.
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("a connection survived pg_ctl restart -m fast")
	}
	conn.Close(ctx)
	wantRows(ctx, t, url, 1)

	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Running(ctx) {
		t.Fatal("Running after Stop")
	}
	if conn, err := pgx.Connect(ctx, url); err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a stopped cluster")
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	wantRows(ctx, t, url, 1)
	if !c.Running(ctx) {
		t.Fatal("not Running after Start")
	}

	dir := c.Dir()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("Close left %s behind (%v)", dir, err)
	}
}

func wantRows(ctx context.Context, t *testing.T, url string, want int) {
	t.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM kept").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Fatalf("kept has %d rows, want %d", n, want)
	}
}
