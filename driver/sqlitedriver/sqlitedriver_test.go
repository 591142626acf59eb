package sqlitedriver_test

import (
	"testing"

	"github.com/salesos/salesos/driver/drivertest"
	"github.com/salesos/salesos/driver/sqlitedriver"
	"github.com/salesos/salesos/internal/testdb"
)

func TestDriver(t *testing.T) { drivertest.Run(t, sqlitedriver.New(), testdb.NewSQLite) }
