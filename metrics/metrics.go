// Package metrics defines the Prometheus metrics of SalesOS and the
// registry they are served from (GET /metrics). Components receive the
// metric they update; gauges that describe stored state (projection lag,
// webhook queue depth) are computed when Prometheus scrapes.
package metrics

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds every metric SalesOS exports.
type Metrics struct {
	Registry *prometheus.Registry

	Requests        *prometheus.CounterVec   // by route, method, status
	RequestDuration *prometheus.HistogramVec // by route, method
	EventsAppended  prometheus.Counter
	Deliveries      *prometheus.CounterVec // by outcome: delivered, retry, failed, interrupted
	// DispatcherErrors counts failed claims, records and lease renewals
	// of the webhook dispatcher, by stage.
	DispatcherErrors *prometheus.CounterVec
	RateLimited      *prometheus.CounterVec // by plan
	RateLimitErrors  prometheus.Counter     // shared budget store unreachable
}

// New registers the metrics (and the Go and process collectors) in a fresh
// registry.
func New() *Metrics {
	r := prometheus.NewRegistry()
	m := &Metrics{
		Registry: r,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "salesos_http_requests_total", Help: "HTTP requests by route template, method and status.",
		}, []string{"route", "method", "status"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "salesos_http_request_duration_seconds", Help: "HTTP request latency by route template and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
		EventsAppended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "salesos_events_appended_total", Help: "Events appended to the event store by this instance.",
		}),
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "salesos_webhook_attempts_total", Help: "Webhook delivery attempts by outcome: delivered, retry (failed, will be retried), failed (failed for good), interrupted (cut short by us; due again).",
		}, []string{"outcome"}),
		DispatcherErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "salesos_webhook_dispatcher_errors_total", Help: "Failed database work of the webhook dispatcher, by stage: claim, record, renew (lease renewal).",
		}, []string{"stage"}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "salesos_rate_limit_rejections_total", Help: "Requests refused with 429, by plan.",
		}, []string{"plan"}),
		RateLimitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "salesos_rate_limit_store_errors_total", Help: "Failures of the shared rate-limit store (Redis); budgets fell back to per-instance.",
		}),
	}
	r.MustRegister(m.Requests, m.RequestDuration, m.EventsAppended, m.Deliveries, m.DispatcherErrors, m.RateLimited, m.RateLimitErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// StateSource reports stored state for the scrape-time gauges.
type StateSource struct {
	// Positions returns each projection's checkpoint and the event store's head.
	Positions func(ctx context.Context) (checkpoints map[string]uint64, head uint64, err error)
	// QueueDepth returns the number of pending webhook deliveries.
	QueueDepth func(ctx context.Context) (int64, error)
	// Projections returns each projection's state, parked events and
	// error count.
	Projections func(ctx context.Context) ([]ProjectionStatus, error)
	// States are the values ProjectionStatus.State takes: the state gauge
	// has one series per state, 1 for the current one.
	States []string
	Logger *slog.Logger
}

// ProjectionStatus is what the projection gauges show of one projection.
type ProjectionStatus struct {
	Name   string
	State  string // running, retrying, parked, ...
	Parked int64  // events parked
	Errors uint64 // failures since the process started
}

// RegisterState adds the projection position/lag and webhook queue gauges.
func (m *Metrics) RegisterState(src StateSource) {
	m.Registry.MustRegister(&stateCollector{src: src,
		position: prometheus.NewDesc("salesos_projection_position", "Global position of the last event a projection applied.", []string{"projection"}, nil),
		lag:      prometheus.NewDesc("salesos_projection_lag_events", "Positions between the event store's head and a projection's checkpoint.", []string{"projection"}, nil),
		head:     prometheus.NewDesc("salesos_eventstore_head_position", "Global position of the last stored event.", nil, nil),
		queue:    prometheus.NewDesc("salesos_webhook_queue_depth", "Webhook deliveries waiting to be delivered (pending).", nil, nil),
		parked:   prometheus.NewDesc("salesos_projection_parked_events", "Events a projection could not apply and set aside (see salesos projections parked).", []string{"projection"}, nil),
		state:    prometheus.NewDesc("salesos_projection_state", "A projection's state in this process: 1 for the current state, 0 for the others.", []string{"projection", "state"}, nil),
		errors:   prometheus.NewDesc("salesos_projection_errors_total", "Failures of a projection (batches, subscriptions, leader lock) in this process; the last error is in /readyz and the logs.", []string{"projection"}, nil),
	})
}

type stateCollector struct {
	src                        StateSource
	position, lag, head, queue *prometheus.Desc
	parked, state, errors      *prometheus.Desc
}

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.position
	ch <- c.lag
	ch <- c.head
	ch <- c.queue
	ch <- c.parked
	ch <- c.state
	ch <- c.errors
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if c.src.Positions != nil {
		cps, head, err := c.src.Positions(ctx)
		if err != nil {
			c.warn("projection positions", err)
		} else {
			ch <- prometheus.MustNewConstMetric(c.head, prometheus.GaugeValue, float64(head))
			for name, cp := range cps {
				ch <- prometheus.MustNewConstMetric(c.position, prometheus.GaugeValue, float64(cp), name)
				lag := 0.0
				if head > cp {
					lag = float64(head - cp)
				}
				ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, lag, name)
			}
		}
	}
	if c.src.Projections != nil {
		ps, err := c.src.Projections(ctx)
		if err != nil {
			c.warn("projection states", err)
		}
		for _, p := range ps {
			ch <- prometheus.MustNewConstMetric(c.parked, prometheus.GaugeValue, float64(p.Parked), p.Name)
			ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(p.Errors), p.Name)
			for _, s := range c.src.States {
				v := 0.0
				if s == p.State {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, p.Name, s)
			}
		}
	}
	if c.src.QueueDepth != nil {
		n, err := c.src.QueueDepth(ctx)
		if err != nil {
			c.warn("webhook queue depth", err)
		} else {
			ch <- prometheus.MustNewConstMetric(c.queue, prometheus.GaugeValue, float64(n))
		}
	}
}

func (c *stateCollector) warn(what string, err error) {
	if c.src.Logger != nil {
		c.src.Logger.Warn("metrics: cannot read "+what, "error", err)
	}
}
