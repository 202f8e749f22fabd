package integration

import (
	"os"
	"os/exec"
	"testing"
)

// requireTool finds a program the test drives for real. In CI (CI=true) a
// missing one fails the test; elsewhere the test skips saying how to get it.
func requireTool(t *testing.T, envVar, name, install string) string {
	t.Helper()
	if p := os.Getenv(envVar); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found and CI=true: %s", name, install)
	}
	t.Skipf("%s not found: %s", name, install)
	return ""
}

// TestSQLCGeneratedCodeUpToDate fails when the checked-in sqlc output no
// longer matches sql/<service>/ (run `make gen`).
func TestSQLCGeneratedCodeUpToDate(t *testing.T) {
	sqlc := requireTool(t, "LIFEBOAT_SQLC", "sqlc", "run `make tools` (builds sqlc into ~/.cache/lifeboat-tools/bin)")
	cmd := exec.Command(sqlc, "diff")
	cmd.Dir = repoRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sqlc diff: the generated query code drifted from sql/ — run `make gen` and commit the result:\n%s", out)
	}
}
