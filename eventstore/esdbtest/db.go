package esdbtest

import (
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// record is one event in the log. Records never change once written.
type record struct {
	id          uuid.UUID
	stream      string
	revision    uint64
	eventType   string
	contentType string
	created     int64 // .NET ticks (100ns) since the Unix epoch
	data        []byte
	meta        []byte
	pos         uint64 // log position: commit == prepare for every event
}

// db is the in-memory log, shared by every incarnation of a Server.
type db struct {
	mu      sync.Mutex
	log     []*record            // in log (= commit) order
	streams map[string][]*record // revision = index
	next    uint64               // where the next record starts
	changed chan struct{}        // closed and replaced on every write

	subscriptions atomic.Int64 // subscription calls served, ever
}

// recordOverhead approximates the fixed part of a prepare record in the
// real transaction file (header, ids, flags, timestamps), so positions grow
// like real ones do: by the size of each record, not by one.
const recordOverhead = 88

func newDB() *db {
	d := &db{streams: make(map[string][]*record), changed: make(chan struct{})}
	// A real node's log starts with its own bookkeeping; so does ours, so
	// that no reader can forget to skip system events.
	d.appendSystem("$settings", "$settings", []byte(`{"$userStreamAcl":{"$r":["$all"],"$w":["$all"],"$d":["$all"],"$mr":["$all"],"$mw":["$all"]}}`))
	d.appendSystem("$stats-127.0.0.1:2113", "$statsCollected", []byte(`{"proc-startTime":"`+time.Now().UTC().Format(time.RFC3339)+`"}`))
	return d
}

func ticksNow() int64 { return time.Now().UnixNano() / 100 }

// write appends records to the log; the caller holds mu.
func (d *db) write(stream string, evs []*record) {
	st := d.streams[stream]
	for _, r := range evs {
		r.stream = stream
		r.revision = uint64(len(st))
		r.pos = d.next
		d.next += recordOverhead + uint64(len(stream)+len(r.eventType)+len(r.contentType)+len(r.data)+len(r.meta))
		st = append(st, r)
		d.log = append(d.log, r)
	}
	d.streams[stream] = st
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *db) appendSystem(stream, eventType string, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.write(stream, []*record{{
		id: uuid.New(), eventType: eventType, contentType: "application/json",
		created: ticksNow(), data: data,
	}})
}

// snapshot returns the log as it is now and a channel closed by the next
// write.
func (d *db) snapshot() ([]*record, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log[:len(d.log):len(d.log)], d.changed
}

// streamSnapshot is snapshot for one stream.
func (d *db) streamSnapshot(stream string) ([]*record, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.streams[stream]
	return st[:len(st):len(st)], d.changed
}

// validPosition reports whether pos is a record boundary of the log or at
// or past its end. The caller holds mu.
func (d *db) validPosition(pos uint64) bool {
	if pos >= d.next {
		return true
	}
	i := sort.Search(len(d.log), func(i int) bool { return d.log[i].pos >= pos })
	return i < len(d.log) && d.log[i].pos == pos
}

// firstAtOrAfter is the index of the first record of log at or after pos.
func firstAtOrAfter(log []*record, pos uint64) int {
	return sort.Search(len(log), func(i int) bool { return log[i].pos >= pos })
}

func (r *record) metadata() map[string]string {
	return map[string]string{
		"type":         r.eventType,
		"content-type": r.contentType,
		"created":      strconv.FormatInt(r.created, 10),
	}
}
