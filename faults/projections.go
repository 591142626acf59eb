// The projections check: every projection reaches the event store's head,
// read from the gauges on /metrics, without a restart of the server.

package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// positions is what /metrics says about the projections.
type positions struct {
	head        uint64
	projections map[string]uint64
	other       map[string][]string // projection → its other metric lines (state, errors, …)
}

// scrapePositions reads salesos_projection_position and
// salesos_eventstore_head_position. Two gauges do not need a Prometheus
// parser: the lines are "name{projection="x"} value" and "name value".
func scrapePositions(ctx context.Context, base string) (positions, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := httpClient.Do(req)
	if err != nil {
		return positions{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return positions{}, fmt.Errorf("/metrics answered %d", resp.StatusCode)
	}
	p := positions{projections: map[string]uint64{}, other: map[string][]string{}}
	sawHead := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, _ := strings.Cut(line, " ")
		value := func() uint64 {
			f, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return uint64(f)
		}
		switch {
		case name == "salesos_eventstore_head_position":
			p.head, sawHead = value(), true
		case strings.HasPrefix(name, `salesos_projection_position{projection="`):
			proj := strings.TrimSuffix(strings.TrimPrefix(name, `salesos_projection_position{projection="`), `"}`)
			p.projections[proj] = value()
		case !strings.HasPrefix(line, "#") && strings.Contains(name, `projection="`) &&
			!strings.HasPrefix(name, "salesos_projection_lag_events{"):
			// Whatever else the server says about a projection (its state,
			// last error, parked events) goes into a failure's message.
			_, after, _ := strings.Cut(name, `projection="`)
			proj, _, _ := strings.Cut(after, `"`)
			p.other[proj] = append(p.other[proj], line)
		}
	}
	if err := sc.Err(); err != nil {
		return p, err
	}
	if !sawHead {
		return p, fmt.Errorf("/metrics has no salesos_eventstore_head_position (the store could not be read)")
	}
	return p, nil
}

func (p positions) String() string {
	var names []string
	for n := range p.projections {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s=%d", n, p.projections[n]))
	}
	return strings.Join(parts, " ") + fmt.Sprintf(" head=%d", p.head)
}

func (p positions) behind() []string {
	var out []string
	for n, pos := range p.projections {
		if pos < p.head {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// checkProjections polls /metrics until every projection is at the head,
// with no restart of the server: a projection that stopped stays behind.
func checkProjections(ctx context.Context, h *harness, scn string, srv *server) {
	start := time.Now()
	deadline := start.Add(h.plan.catchUp)
	var last positions
	var lastErr error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		p, err := scrapePositions(ctx, srv.base())
		last, lastErr = p, err
		if err == nil && len(p.projections) > 0 && len(p.behind()) == 0 {
			h.pass(scn, "projections reach the event-store head without a restart", "%s after %s", p, time.Since(start).Round(10*time.Millisecond))
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	switch {
	case lastErr != nil:
		h.fail(scn, "projections reach the event-store head without a restart", "after %s: %v", h.plan.catchUp, lastErr)
	case len(last.projections) == 0:
		h.fail(scn, "projections reach the event-store head without a restart", "no salesos_projection_position in /metrics")
	default:
		var more []string
		for _, n := range last.behind() {
			more = append(more, last.other[n]...)
		}
		if len(more) > 6 {
			more = more[:6]
		}
		rz := truncate(string(srv.get(ctx, "/readyz")), 300)
		h.fail(scn, "projections reach the event-store head without a restart", "after %s still behind: %s (%s); /readyz said %s%s",
			h.plan.catchUp, strings.Join(last.behind(), ", "), last, rz, samples(more))
	}
}
