// Plain reads of a stream or of $all, and the event-type and stream
// filters that $all reads and subscriptions apply.

package esdbtest

import (
	"regexp"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func (r *reader) readStream(so *streams.ReadReq_Options_StreamOptions, backwards bool, count uint64) error {
	name := string(so.GetStreamIdentifier().GetStreamName())
	st, _ := r.db.streamSnapshot(name)
	if len(st) == 0 {
		return r.srv.Send(&streams.ReadResp{Content: &streams.ReadResp_StreamNotFound_{
			StreamNotFound: &streams.ReadResp_StreamNotFound{StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)}},
		}})
	}
	n := uint64(len(st))
	if !backwards {
		var from uint64
		switch ro := so.GetRevisionOption().(type) {
		case *streams.ReadReq_Options_StreamOptions_Revision:
			from = ro.Revision
		case *streams.ReadReq_Options_StreamOptions_End:
			from = n
		}
		for i := from; i < n && count > 0; i, count = i+1, count-1 {
			if err := r.send(st[i]); err != nil {
				return err
			}
		}
		return nil
	}
	from := int64(n) - 1
	switch ro := so.GetRevisionOption().(type) {
	case *streams.ReadReq_Options_StreamOptions_Revision:
		from = min(int64(ro.Revision), from)
	case *streams.ReadReq_Options_StreamOptions_Start:
		from = 0
	}
	for i := from; i >= 0 && count > 0; i, count = i-1, count-1 {
		if err := r.send(st[i]); err != nil {
			return err
		}
	}
	return nil
}

// allStart resolves an $all start to an index of log (the first record at
// or after the position), refusing positions inside a record.
func (r *reader) allStart(ao *streams.ReadReq_Options_AllOptions, log []*record) (int, error) {
	switch ao.GetAllOption().(type) {
	case *streams.ReadReq_Options_AllOptions_Start:
		return 0, nil
	case *streams.ReadReq_Options_AllOptions_End:
		return len(log), nil
	case *streams.ReadReq_Options_AllOptions_Position:
		p := ao.GetPosition()
		r.db.mu.Lock()
		ok := r.db.validPosition(p.GetCommitPosition())
		r.db.mu.Unlock()
		if !ok {
			return 0, status.Errorf(codes.InvalidArgument, "invalid position: %d/%d is not the position of a record", p.GetCommitPosition(), p.GetPreparePosition())
		}
		return firstAtOrAfter(log, p.GetCommitPosition()), nil
	}
	return 0, status.Error(codes.InvalidArgument, "an $all position, start or end is required")
}

func (r *reader) readAll(ao *streams.ReadReq_Options_AllOptions, backwards bool, count uint64) error {
	log, _ := r.db.snapshot()
	i, err := r.allStart(ao, log)
	if err != nil {
		return err
	}
	if !backwards {
		for ; i < len(log) && count > 0; i++ {
			if r.filter.match(log[i]) {
				if err := r.send(log[i]); err != nil {
					return err
				}
				count--
			}
		}
		return nil
	}
	// Backwards: strictly before the position; from the end, the last
	// record first; from the start, nothing.
	for i--; i >= 0 && count > 0; i-- {
		if r.filter.match(log[i]) {
			if err := r.send(log[i]); err != nil {
				return err
			}
			count--
		}
	}
	return nil
}

type filter struct {
	onType   bool // else on the stream name
	re       *regexp.Regexp
	prefixes []string
}

func compileFilter(f *streams.ReadReq_Options_FilterOptions) (*filter, error) {
	var out filter
	var expr *streams.ReadReq_Options_FilterOptions_Expression
	if e := f.GetEventType(); e != nil {
		out.onType, expr = true, e
	} else if e := f.GetStreamIdentifier(); e != nil {
		expr = e
	} else {
		return nil, status.Error(codes.InvalidArgument, "a filter needs an event type or stream expression")
	}
	if expr.GetRegex() != "" {
		re, err := regexp.Compile(expr.GetRegex())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "filter regex: %v", err)
		}
		out.re = re
	} else {
		out.prefixes = expr.GetPrefix()
	}
	return &out, nil
}

// match: a nil filter matches everything.
func (f *filter) match(r *record) bool {
	if f == nil {
		return true
	}
	subject := r.stream
	if f.onType {
		subject = r.eventType
	}
	if f.re != nil {
		return f.re.MatchString(subject)
	}
	for _, p := range f.prefixes {
		if strings.HasPrefix(subject, p) {
			return true
		}
	}
	return false
}
