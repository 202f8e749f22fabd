package benchmark

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"lifeboat.dev/pkg/testtool"
)

// TestBenchBackupReports runs the benchmark on a small database: every
// figure the bench harness reads is there.
func TestBenchBackupReports(t *testing.T) {
	testtool.Need(t, "sqlite3", "apt-get install sqlite3")
	if testing.Short() {
		t.Skip("generates a database and a 100k catalog")
	}
	res, err := BenchBackup(t.Context(), t.TempDir(), 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"lifeboat_seconds", "sqlite3_backup_seconds", "cp_seconds", "lifeboat_vs_sqlite3_backup", "lifeboat_vs_cp",
		"writer_max_stall_ms", "lifeboat_writer_max_gap_ms", "retention_100k_rule_ms", "retention_100k_pass_ms", "size_bytes"} {
		if _, ok := res[k]; !ok {
			t.Errorf("no %s in %v", k, res)
		}
	}
	if res["size_bytes"].(int64) < 4<<20 {
		t.Errorf("database of %d bytes, asked for 4 MiB", res["size_bytes"])
	}
	t.Log(res)
}

// BenchmarkBackup is BenchBackup as a Go benchmark; LIFEBOAT_BENCH_BYTES
// sets the database size (default 64 MiB; the bar is for 1 GiB) and
// LIFEBOAT_BENCH_DIR keeps the generated database between runs.
func BenchmarkBackup(b *testing.B) {
	testtool.Need(b, "sqlite3", "apt-get install sqlite3")
	size := int64(64 << 20)
	if v := os.Getenv("LIFEBOAT_BENCH_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatalf("LIFEBOAT_BENCH_BYTES=%q: %v", v, err)
		}
		size = n
	}
	dir := os.Getenv("LIFEBOAT_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	for b.Loop() {
		res, err := BenchBackup(b.Context(), dir, size)
		if err != nil {
			b.Fatal(err)
		}
		b.Log(res)
		// Every figure, so that bench/ (make bench) can read them all from
		// the benchmark line; text results (a peer that did not finish) are
		// in the log above.
		for k, v := range res {
			switch v := v.(type) {
			case float64:
				b.ReportMetric(v, k)
			case int64:
				b.ReportMetric(float64(v), k)
			case int:
				b.ReportMetric(float64(v), k)
			}
		}
	}
}

// BenchmarkRetention times the retention rule alone and a whole deciding
// pass over a catalog of CatalogSize backups (DESIGN §5: under 100 ms),
// without the backup benchmark's database and writer.
func BenchmarkRetention(b *testing.B) {
	c, err := newRetentionCatalog(b.Context(), filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.Run("rule", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Rule(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pass", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Pass(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
