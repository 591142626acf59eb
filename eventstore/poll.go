package eventstore

import (
	"context"
	"sync"
	"time"
)

// Signal is a broadcast wake-up: waiters take the current channel with Wait
// and are released together by the next Notify. Backends use it to wake
// subscriptions after a commit instead of polling in a tight loop.
type Signal struct {
	mu sync.Mutex
	ch chan struct{}
}

// Wait returns a channel that is closed by the next Notify. Take it before
// checking for new work, so a Notify in between is never missed.
func (s *Signal) Wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// Notify wakes every current waiter.
func (s *Signal) Notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

// PollingSubscription implements Subscription on top of ReadAll for backends
// whose positions are gap-safe. It reads a page; when there is nothing new it
// sleeps until the backend's Signal fires or PollInterval passes (the poll is
// the safety net for wake-ups that come from other processes).
type PollingSubscription struct {
	Read         func(ctx context.Context, after uint64, limit int) ([]RecordedEvent, error)
	Signal       *Signal
	PollInterval time.Duration
	After        uint64
	BatchSize    int
}

// Next implements Subscription.
func (p *PollingSubscription) Next(ctx context.Context) ([]RecordedEvent, error) {
	batch := p.BatchSize
	if batch <= 0 {
		batch = DefaultBatchSize
	}
	interval := p.PollInterval
	if interval <= 0 {
		interval = time.Second
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var wake <-chan struct{}
		if p.Signal != nil {
			wake = p.Signal.Wait()
		}
		evs, err := p.Read(ctx, p.After, batch)
		if err != nil {
			return nil, err
		}
		if len(evs) > 0 {
			p.After = evs[len(evs)-1].Position
			return evs, nil
		}
		if timer == nil {
			timer = time.NewTimer(interval)
		} else {
			timer.Reset(interval)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wake:
		case <-timer.C:
		}
	}
}

// Close implements Subscription.
func (p *PollingSubscription) Close() error { return nil }
