// Appending: validating what is written, mapping expected versions to
// expected revisions, and turning a wrong expected version into a
// VersionConflictError.

package esdb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/salesos/salesos/eventstore"
)

func validateAppend(stream string, expected int64, events []eventstore.EventData) ([]esdbclient.EventData, error) {
	if stream == "" {
		return nil, fmt.Errorf("%w: empty stream name", eventstore.ErrInvalidAppend)
	}
	if strings.HasPrefix(stream, "$") {
		return nil, fmt.Errorf("%w: stream %q: names starting with $ are EventStoreDB system streams", eventstore.ErrInvalidAppend, stream)
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: no events", eventstore.ErrInvalidAppend)
	}
	if expected < eventstore.Any {
		return nil, fmt.Errorf("%w: expected version %d", eventstore.ErrInvalidAppend, expected)
	}
	out := make([]esdbclient.EventData, len(events))
	for i, e := range events {
		if e.ID == "" || e.Type == "" {
			return nil, fmt.Errorf("%w: event %d needs an id and a type", eventstore.ErrInvalidAppend, i)
		}
		if strings.HasPrefix(e.Type, "$") {
			return nil, fmt.Errorf("%w: event %d: types starting with $ are EventStoreDB system types", eventstore.ErrInvalidAppend, i)
		}
		id, err := uuid.Parse(e.ID)
		if err != nil {
			return nil, fmt.Errorf("%w: event %d: id %q is not a UUID", eventstore.ErrInvalidAppend, i, e.ID)
		}
		if !json.Valid(e.Data) || (len(e.Metadata) > 0 && !json.Valid(e.Metadata)) {
			return nil, fmt.Errorf("%w: event %d: data and metadata must be JSON", eventstore.ErrInvalidAppend, i)
		}
		out[i] = esdbclient.EventData{
			EventID:     id,
			EventType:   e.Type,
			ContentType: esdbclient.ContentTypeJson,
			Data:        e.Data,
			Metadata:    e.Metadata,
		}
	}
	return out, nil
}

func expectedRevision(expected int64) esdbclient.ExpectedRevision {
	switch {
	case expected == eventstore.Any:
		return esdbclient.Any{}
	case expected <= 0:
		return esdbclient.NoStream{}
	default:
		return esdbclient.Revision(uint64(expected - 1))
	}
}

// Append implements eventstore.Store.
func (s *Store) Append(ctx context.Context, stream string, expected int64, events ...eventstore.EventData) (eventstore.AppendResult, error) {
	proposed, err := validateAppend(stream, expected, events)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	opts := esdbclient.AppendToStreamOptions{ExpectedRevision: expectedRevision(expected)}
	res, err := retry(s, ctx, "append", func(ctx context.Context, c *esdbclient.Client) (*esdbclient.WriteResult, error) {
		return c.AppendToStream(ctx, stream, opts, proposed...)
	})
	if err != nil {
		var e *esdbclient.Error
		switch {
		case errors.As(err, &e) && e.Code() == esdbclient.ErrorCodeWrongExpectedVersion:
			actual, ok := actualVersion(err)
			if !ok {
				if actual, err = s.version(ctx, stream); err != nil {
					return eventstore.AppendResult{}, fmt.Errorf("eventstore/esdb: append to %s: wrong expected version, and reading the actual one failed: %w", stream, err)
				}
			}
			return eventstore.AppendResult{}, &eventstore.VersionConflictError{Stream: stream, Expected: expected, Actual: actual}
		case status.Code(err) == codes.InvalidArgument:
			return eventstore.AppendResult{}, fmt.Errorf("%w: %v", eventstore.ErrInvalidAppend, err)
		}
		return eventstore.AppendResult{}, fmt.Errorf("eventstore/esdb: append to %s: %w", stream, err)
	}
	return eventstore.AppendResult{Version: int64(res.NextExpectedVersion) + 1, Position: res.CommitPosition}, nil
}

// The client reports a wrong expected version only as text:
// "wrong expected version: expecting '<expected>' but got '<current>'",
// current being "no_stream" or the current revision.
var currentRevisionRE = regexp.MustCompile(`but got '([^']*)'`)

func actualVersion(err error) (int64, bool) {
	m := currentRevisionRE.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, false
	}
	if m[1] == "no_stream" {
		return 0, true
	}
	rev, perr := strconv.ParseInt(m[1], 10, 64)
	if perr != nil || rev < 0 {
		return 0, false
	}
	return rev + 1, true
}

// version reads a stream's current version (0 if it has no events).
func (s *Store) version(ctx context.Context, stream string) (int64, error) {
	return retry(s, ctx, "read stream version", func(ctx context.Context, c *esdbclient.Client) (int64, error) {
		rs, err := c.ReadStream(ctx, stream, esdbclient.ReadStreamOptions{Direction: esdbclient.Backwards, From: esdbclient.End{}}, 1)
		if err != nil {
			return 0, err
		}
		defer rs.Close()
		ev, err := rs.Recv()
		switch {
		case isNotFound(err), errors.Is(err, io.EOF):
			return 0, nil
		case err != nil:
			return 0, err
		}
		return int64(ev.OriginalEvent().EventNumber) + 1, nil
	})
}
