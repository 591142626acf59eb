package main

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"
)

// samples holds every latency of a measurement; percentiles are exact.
type samples struct {
	d      []time.Duration
	sorted bool
}

func (s *samples) add(more ...time.Duration) {
	s.d = append(s.d, more...)
	s.sorted = false
}

// percentile is the nearest-rank percentile (p in (0, 100]); 0 when empty.
func (s *samples) percentile(p float64) time.Duration {
	if len(s.d) == 0 {
		return 0
	}
	if !s.sorted {
		slices.Sort(s.d)
		s.sorted = true
	}
	rank := int(math.Ceil(p / 100 * float64(len(s.d))))
	rank = min(max(rank, 1), len(s.d))
	return s.d[rank-1]
}

// loadResult is what a closed-loop load run observed.
type loadResult struct {
	ok, failed int64
	elapsed    time.Duration
	lat        samples // latency of every completed operation, failed ones too
	firstErr   error
}

func (r *loadResult) opsPerSec() float64 { return float64(r.ok) / r.elapsed.Seconds() }

// runLoad runs op in a closed loop on workers goroutines until duration has
// passed (an operation started before the deadline is allowed to finish) or
// ctx ends. op returns false or an error for a failed operation.
// elapsed runs from the common start to the moment the last worker stopped.
func runLoad(ctx context.Context, workers int, duration time.Duration, op func(ctx context.Context, worker int) (bool, error)) *loadResult {
	type workerOut struct {
		ok, failed int64
		lat        []time.Duration
		err        error
	}
	outs := make([]workerOut, workers)
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(duration)
	for w := range workers {
		wg.Go(func() {
			out := &outs[w]
			out.lat = make([]time.Duration, 0, 4096)
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(deadline) {
					return
				}
				good, err := op(ctx, w)
				out.lat = append(out.lat, time.Since(t0))
				if good && err == nil {
					out.ok++
					continue
				}
				out.failed++
				if err != nil && out.err == nil {
					out.err = err
				}
			}
		})
	}
	wg.Wait()
	res := &loadResult{elapsed: time.Since(start)}
	for _, o := range outs {
		res.ok += o.ok
		res.failed += o.failed
		res.lat.add(o.lat...)
		if res.firstErr == nil {
			res.firstErr = o.err
		}
	}
	return res
}
