package integration

import (
	"os/exec"
	"testing"

	"lifeboat.dev/pkg/testtool"
)

// TestSQLCGeneratedCodeUpToDate fails when the checked-in sqlc output no
// longer matches sql/<service>/ (run `make gen`).
func TestSQLCGeneratedCodeUpToDate(t *testing.T) {
	sqlc := testtool.Need(t, "sqlc", "run `make tools` (builds sqlc into ~/.cache/lifeboat-tools/bin)", "LIFEBOAT_SQLC")
	cmd := exec.Command(sqlc, "diff")
	cmd.Dir = repoRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sqlc diff: the generated query code drifted from sql/ — run `make gen` and commit the result:\n%s", out)
	}
}
