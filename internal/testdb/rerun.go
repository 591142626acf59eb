package testdb

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RerunOn runs this test binary again with BackendEnv set to backend,
// so one suite covers every backend without a copy of its tests. Call it
// from one test per package; in the child run it does nothing.
func RerunOn(t *testing.T, backend string) {
	t.Helper()
	if os.Getenv(BackendEnv) != "" {
		t.Skipf("this run already targets %s", Backend())
	}
	cmd := exec.Command(os.Args[0], "-test.count=1", "-test.timeout=15m")
	cmd.Env = append(os.Environ(), BackendEnv+"="+backend)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the suite fails on %s:\n%s", backend, tail(string(out), 200))
	}
	if !strings.Contains(string(out), "PASS") {
		t.Fatalf("the suite did not run on %s:\n%s", backend, tail(string(out), 50))
	}
}

func tail(s string, lines int) string {
	all := strings.Split(s, "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
