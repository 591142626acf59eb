package projections

import (
	"context"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/eventstore"
)

// The projections of the record kinds. Each is its kind's descriptor
// (leadKind in leads.go, dealKind in deals.go) put to work by the shared
// code in kind.go; only the leads add a step of their own (Prepare).
//
// Their names are checkpoint keys: renaming one would replay the whole
// store into its table under the new key.

const (
	// LeadsName is the leads projection's checkpoint key.
	LeadsName = "leads"
	// DealsName is the deals projection's checkpoint key.
	DealsName = "deals"
)

// Leads maintains the leads table through Driver.
type Leads struct{ Driver driver.Driver }

// Deals maintains the deals table through Driver.
type Deals struct{ Driver driver.Driver }

// Name implements Projection.
func (Leads) Name() string { return leadKind.name }

// Name implements Projection.
func (Deals) Name() string { return dealKind.name }

// Reset implements Projection.
func (l Leads) Reset(ctx context.Context, tx *sqlx.Tx) error {
	return leadKind.reset(ctx, tx, l.Driver)
}

// Reset implements Projection.
func (d Deals) Reset(ctx context.Context, tx *sqlx.Tx) error {
	return dealKind.reset(ctx, tx, d.Driver)
}

// Apply implements Projection; see Leads.Apply. Deals are not a Preparer:
// the batch is decoded inside the transaction.
func (p Deals) Apply(ctx context.Context, tx *sqlx.Tx, events []eventstore.RecordedEvent) error {
	dec, err := decodeKind(events, dealKind.kind)
	if err != nil {
		return err
	}
	return dealKind.project(ctx, tx, p.Driver, dec, nil)
}
