// Package drivertest is the suite every driver.Driver passes, operation by
// operation (as River's riverdrivertest is for its drivers). Each driver
// package runs it from its tests:
//
//	func TestDriver(t *testing.T) { drivertest.Run(t, pgdriver.New(), testdb.NewPostgres) }
//
// A test here names one operation and checks what it stores and returns
// on a freshly migrated database of the driver's kind; the areas (webhooks,
// projections, idempotency) each have a file of their own.
package drivertest

import (
	"testing"

	"github.com/salesos/salesos/driver"
	"github.com/salesos/salesos/internal/testdb"
)

// Open gives a test its own freshly migrated database for the driver.
type Open func(t testing.TB) *testdb.Schema

// Run runs the whole suite against d.
func Run(t *testing.T, d driver.Driver, open Open) {
	t.Run("Name", func(t *testing.T) {
		t.Parallel()
		if s := open(t); s.Driver.Name() != d.Name() {
			t.Fatalf("the database opened for %s drivers is a %s database", d.Name(), s.Driver.Name())
		}
	})
	for _, area := range areas {
		t.Run(area.name, func(t *testing.T) { area.run(t, d, open) })
	}
}

// areas are the parts of the suite; each area file adds itself in init.
var areas []area

type area struct {
	name string
	run  func(t *testing.T, d driver.Driver, open Open)
}
