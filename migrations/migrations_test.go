package migrations_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/salesos/salesos/internal/testdb"
	"github.com/salesos/salesos/migrations"
)

func TestApplyIsIdempotentAndConcurrentSafe(t *testing.T) {
	t.Parallel()
	s := testdb.NewEmptyPostgres(t)
	all, err := migrations.List("postgres")
	if err != nil {
		t.Fatal(err)
	}
	// Several instances starting at once: each migration runs exactly once.
	var wg sync.WaitGroup
	applied := make([]int, 4)
	for i := range applied {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := migrations.Apply(context.Background(), s.DB)
			if err != nil {
				t.Error(err)
				return
			}
			applied[i] = len(res.Applied)
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range applied {
		total += n
	}
	if total != len(all) {
		t.Fatalf("migrations applied %d times in all, want %d", total, len(all))
	}
	res, err := migrations.Apply(context.Background(), s.DB)
	if err != nil || len(res.Applied) != 0 || res.Current != len(all) {
		t.Fatalf("second run: %+v %v", res, err)
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	t.Parallel()
	s := testdb.NewPostgres(t)
	if _, err := s.DB.Exec(`INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')`); err != nil {
		t.Fatal(err)
	}
	if _, err := migrations.Apply(context.Background(), s.DB); !errors.Is(err, migrations.ErrNewerSchema) {
		t.Fatalf("err = %v, want ErrNewerSchema", err)
	}
}
