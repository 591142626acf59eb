package metrics

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/salesos/salesos/eventstore"
)

// CountAppends decorates an event store so that every event it appends
// successfully is counted.
func CountAppends(s eventstore.Store, c prometheus.Counter) eventstore.Store {
	return countingStore{Store: s, appended: c}
}

type countingStore struct {
	eventstore.Store
	appended prometheus.Counter
}

func (s countingStore) Append(ctx context.Context, stream string, expected int64, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	res, err := s.Store.Append(ctx, stream, expected, events...)
	if err == nil {
		s.appended.Add(float64(len(events)))
	}
	return res, err
}
