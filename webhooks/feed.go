package webhooks

import (
	"context"
	"slices"
	"strings"

	"github.com/salesos/salesos/driver"
)

// FeedItem is one event of the organization's feed.
type FeedItem struct {
	Position int64
	Payload  string // the JSON body, as webhooks send it
}

// Feed returns the organization's events after a position, oldest first,
// optionally only types matching the patterns.
func (s *Store) Feed(ctx context.Context, orgID string, after int64, patterns []string, limit int) ([]FeedItem, bool, error) {
	read := driver.FeedRead{OrgID: orgID, After: after, Limit: limit + 1}
	if len(patterns) > 0 && !slices.Contains(patterns, "*") {
		// The same patterns as subscriptions: an exact type or "<prefix>.*".
		for _, p := range patterns {
			if prefix, ok := strings.CutSuffix(p, ".*"); ok {
				read.Prefixes = append(read.Prefixes, prefix+".")
			} else {
				read.Exact = append(read.Exact, p)
			}
		}
	}
	rows, err := s.Driver.ReadFeed(ctx, s.reader(), read)
	if err != nil {
		return nil, false, err
	}
	var items []FeedItem
	for _, r := range rows {
		items = append(items, FeedItem(r))
	}
	if len(items) > limit {
		return items[:limit], true, nil
	}
	return items, false, nil
}
