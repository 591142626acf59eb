package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
)

// A worker that returns or panics while the server runs is started again;
// it stops for good only when its context ends.
func TestSupervisedWorkerIsRestarted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runs atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		superviseWorker(ctx, "test worker", slog.New(slog.NewTextHandler(io.Discard, nil)), func(ctx context.Context) error {
			switch runs.Add(1) {
			case 1:
				return errors.New("lost the database")
			case 2:
				panic("bug")
			case 3:
				return nil // returned early without an error
			}
			cancel()
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	<-done
	if n := runs.Load(); n != 4 {
		t.Fatalf("worker ran %d times, want 4", n)
	}
}
