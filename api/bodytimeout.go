package api

import (
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
)

// DefaultBodyTimeout is how long a client has to send a request body once
// its headers have arrived. A JSON body of at most 1 MB takes well under a
// second on any working link; 30 s leaves room for a bad mobile one.
const DefaultBodyTimeout = 30 * time.Second

// errBodyTimeout is what reading a body returns once its time is up.
var errBodyTimeout = errors.New("request body not received in time")

// bodyTimeout bounds the time a request body may take to arrive.
//
// http.Server's ReadTimeout alone does not do it well: it counts from the
// first header byte for the whole request, it expires together with
// WriteTimeout (so the client is cut off with no answer at all), and it
// holds the goroutine for that long. Here the deadline is per request body
// and the client gets the contract's answer, 408 request_timeout (the
// status HTTP defines for "the request did not arrive in time"; a 400
// would tell the client its request was wrong when only its link was slow,
// and a client may retry a 408 on a new connection).
//
// The connection's read deadline is only moved when the time is up, or when
// the handler is done with a body it did not read in full (so the server's
// draining of the rest is bounded too). A body that arrives in time leaves
// the server's own deadlines alone: shortening them would also cancel a
// handler that runs longer than the body timeout, since net/http watches
// the connection for the client going away once the body is in.
func bodyTimeout(timeout time.Duration) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if timeout <= 0 || !hasBody(r) {
				return next(c)
			}
			tb := &timedBody{
				ReadCloser: r.Body,
				rc:         http.NewResponseController(c.Response().Writer),
				deadline:   time.Now().Add(timeout),
			}
			tb.timer = time.AfterFunc(timeout, tb.expire)
			r.Body = tb
			defer tb.handlerDone()
			return next(c)
		}
	}
}

// timedBody is a request body with a deadline.
type timedBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	deadline time.Time
	timer    *time.Timer

	mu      sync.Mutex
	done    bool // the body was read to the end, or the handler returned
	expired bool
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == nil {
		return n, nil
	}
	b.mu.Lock()
	expired := b.expired
	if errors.Is(err, io.EOF) {
		b.done = true
	}
	b.mu.Unlock()
	if expired && !errors.Is(err, io.EOF) {
		return n, errBodyTimeout
	}
	return n, err
}

// expire makes a pending read of the body fail now.
func (b *timedBody) expire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.expired = true
	_ = b.rc.SetReadDeadline(time.Now())
}

// handlerDone runs when the handler returns. If the body was not read to
// the end, net/http reads (part of) the rest after the handler to keep the
// connection, so that reading keeps the body's deadline.
func (b *timedBody) handlerDone() {
	b.timer.Stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done && !b.expired {
		_ = b.rc.SetReadDeadline(b.deadline)
	}
	b.done = true
}
