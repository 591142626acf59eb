package pgdriver_test

import (
	"testing"

	"github.com/salesos/salesos/driver/drivertest"
	"github.com/salesos/salesos/driver/pgdriver"
	"github.com/salesos/salesos/internal/testdb"
)

func TestDriver(t *testing.T) { drivertest.Run(t, pgdriver.New(), testdb.NewPostgres) }
