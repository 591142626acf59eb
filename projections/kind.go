package projections

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/domain"
	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/envelope"
	"github.com/salesos/salesos/eventstore"
)

// recordKind is what the code shared by every record kind (projecting a
// batch into rows, reading one row, history and as_of) needs to know about
// one kind: T is the domain record, R its stored row, W a write of that row
// as the driver takes it. Leads and deals each fill one in (leadKind,
// dealKind); what really differs between them (list filters, amounts and
// dates in the row, the leads' encoding ahead of the transaction) stays in
// their own files.
type recordKind[T, R, W any] struct {
	// name is the projection's name (its checkpoint key) and its table.
	name string
	kind envelope.Kind
	// stream is the event stream of one record.
	stream func(id string) string
	// blank is the record before its first event.
	blank func(id string) T
	// apply folds one event into the record, and version is the stream
	// version the record has folded up to.
	apply   func(*T, domain.Event, domain.Metadata)
	version func(T) int64
	// created says whether the record saw its creation (a version and an
	// organization): one that did not has nothing to project.
	created func(T) bool
	// foldAll folds a whole stream as the domain does (as_of reads).
	foldAll func(id string, events []domain.Recorded) (T, error)
	changes func(before, after T) map[string]domain.Change
	cursor  func(T) Cursor

	fromRow func(R) (T, error)
	toRow   func(T) (R, error)
	// row is what the shared code reads of a stored row.
	row func(*R) (id, orgID string, deleted bool)
	// write is the write replacing before (nil when it was not loaded)
	// with after.
	write func(before *R, after R) W

	// The driver's calls for this kind's table (method expressions, so a
	// kind needs no driver until it is used).
	load   func(d driver.Driver, ctx context.Context, e driver.Executor, ids []string) ([]R, error)
	upsert func(d driver.Driver, ctx context.Context, tx *sqlx.Tx, writes []W) error
	get    func(d driver.Driver, ctx context.Context, e driver.Executor, id string) (R, error)
}

// reset empties the kind's table, for a rebuild.
func (k recordKind[T, R, W]) reset(ctx context.Context, tx *sqlx.Tx, drv driver.Driver) error {
	return drv.EmptyReadModel(ctx, tx, k.name)
}

// fold applies the events newer than r's version.
func (k recordKind[T, R, W]) fold(r T, evs []envelope.Envelope) T {
	for _, e := range evs {
		if e.Version <= k.version(r) {
			continue // already in the row
		}
		k.apply(&r, e.Event, e.Meta)
	}
	return r
}

// project folds a batch's events (d, already trimmed of what an earlier
// transaction applied) over the stored rows and writes every touched record
// in one driver call. born holds the writes prepared ahead for records
// created in the batch (nil when none were).
func (k recordKind[T, R, W]) project(ctx context.Context, tx *sqlx.Tx, drv driver.Driver, d decoded, born map[string]W) error {
	if len(d.order) == 0 {
		return nil
	}
	// Only records created before these events can have a row: a record
	// whose first event here is its creation is new.
	existing := make([]string, 0, len(d.order))
	for _, id := range d.order {
		if d.byID[id][0].Version > 1 {
			existing = append(existing, id)
		}
	}
	loaded, err := k.load(drv, ctx, tx, existing)
	if err != nil {
		return err
	}
	current := indexByID(loaded, func(r *R) string { id, _, _ := k.row(r); return id })
	// The stored row goes along with its new state: a driver may write only
	// the columns that changed (SQLite does).
	writes := make([]W, 0, len(d.order))
	for _, id := range d.order {
		if b, ok := born[id]; ok && d.byID[id][0].Version == 1 {
			// Created in this batch and none of its events applied yet:
			// it was folded ahead.
			writes = append(writes, b)
			continue
		}
		stored, ok := current[id]
		rec := k.blank(id)
		if ok {
			if rec, err = k.fromRow(stored); err != nil {
				return err
			}
		}
		rec = k.fold(rec, d.byID[id])
		if !k.created(rec) {
			continue // no creation seen: nothing to project
		}
		r, err := k.toRow(rec)
		if err != nil {
			return err
		}
		var before *R
		if ok {
			before = &stored
		}
		writes = append(writes, k.write(before, r))
	}
	return k.upsert(drv, ctx, tx, writes)
}

// getLive returns a live record of the organization, or domain.ErrNotFound.
//
// The statement names the primary key alone and the organization and
// deletion are checked here: with "org_id = $1" in the WHERE clause,
// PostgreSQL's cached generic plan for a table it has no statistics of
// yet can pick an org_id index and walk every record of the organization.
func (k recordKind[T, R, W]) getLive(ctx context.Context, drv driver.Driver, e driver.Executor, orgID, id string) (T, error) {
	var zero T
	r, err := k.get(drv, ctx, e, id)
	if err == nil {
		if _, org, deleted := k.row(&r); org != orgID || deleted {
			err = sql.ErrNoRows
		}
	}
	if errors.Is(err, sql.ErrNoRows) {
		return zero, domain.ErrNotFound
	}
	if err != nil {
		return zero, err
	}
	return k.fromRow(r)
}

// page is the page of rows read with one row more than limit; the extra
// row is not converted.
func (k recordKind[T, R, W]) page(rows []R, limit int) (Page[T], error) {
	out := Page[T]{Data: make([]T, 0, len(rows))}
	for i, r := range rows {
		if i == limit {
			out.HasMore = true
			break
		}
		rec, err := k.fromRow(r)
		if err != nil {
			return out, err
		}
		out.Data = append(out.Data, rec)
	}
	if out.HasMore {
		c := k.cursor(out.Data[len(out.Data)-1])
		out.NextCursor = &c
	}
	return out, nil
}

// history lists every change of a record, oldest first, deletion included.
func (k recordKind[T, R, W]) history(ctx context.Context, store eventstore.StreamReader, orgID, id string) ([]HistoryEntry, error) {
	envs, err := envelope.ReadRecord(ctx, store, k.stream(id), orgID)
	if err != nil {
		return nil, err
	}
	out := make([]HistoryEntry, 0, len(envs))
	state := k.blank(id)
	for _, e := range envs {
		before := state
		k.apply(&state, e.Event, e.Meta)
		out = append(out, entry(e, k.changes(before, state)))
	}
	return out, nil
}

// asOf folds a record's events up to and including instant at. A record
// that did not exist yet, or was already deleted, at that instant is not
// found.
func (k recordKind[T, R, W]) asOf(ctx context.Context, store eventstore.StreamReader, orgID, id string, at time.Time) (T, error) {
	envs, err := envelope.ReadRecord(ctx, store, k.stream(id), orgID)
	if err != nil {
		var zero T
		return zero, err
	}
	return k.foldAll(id, envelope.Recorded(envelope.Until(envs, at)))
}

// indexByID indexes rows (as a driver's LoadLeads or LoadDeals returns
// them) by their id.
func indexByID[R any](rows []R, id func(*R) string) map[string]R {
	out := make(map[string]R, len(rows))
	for i := range rows {
		out[id(&rows[i])] = rows[i]
	}
	return out
}

// decoded is a batch's events of one record kind, grouped by record id in
// first-seen order.
type decoded struct {
	byID  map[string][]envelope.Envelope
	order []string
}

func decodeKind(events []eventstore.RecordedEvent, kind envelope.Kind) (decoded, error) {
	d := decoded{byID: map[string][]envelope.Envelope{}}
	for _, r := range events {
		k, id, ok := envelope.ParseStream(r.StreamID)
		if !ok || k != kind {
			continue
		}
		e, err := envelope.Decode(r)
		if err != nil {
			return decoded{}, err
		}
		if _, seen := d.byID[id]; !seen {
			d.order = append(d.order, id)
		}
		d.byID[id] = append(d.byID[id], e)
	}
	return d, nil
}
