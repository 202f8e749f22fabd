package backupscheduler

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/storekind/storekindtest"
)

// TestSelfKindConformance: lifeboat-self's kind passes the suite every
// store kind passes, over a data directory with two service databases.
func TestSelfKindConformance(t *testing.T) {
	svcs := []string{events.ServiceBackupScheduler, events.ServiceSync}
	storekindtest.Run(t, func(t *testing.T) storekindtest.Store {
		data := t.TempDir()
		for _, svc := range svcs {
			p := service.DBPath(data, svc)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			newStore(t, p)
		}
		return storekindtest.Store{
			Kind: selfKind{dataDir: data},
			Path: data,
			Change: func(t *testing.T) {
				for _, svc := range svcs {
					execSQL(t, service.DBPath(data, svc), "DELETE FROM items WHERE id % 2 = 0")
				}
			},
			Check: func(t *testing.T, target string) {
				t.Helper()
				for _, svc := range svcs {
					if n := countItems(t, service.DBPath(target, svc)); n != 500 {
						t.Errorf("%s: %d rows, want the 500 seeded", svc, n)
					}
				}
			},
		}
	})
}

func TestSelfKindNeedsADatabase(t *testing.T) {
	if _, err := (selfKind{dataDir: t.TempDir()}).Dump(t.Context(), t.TempDir()); err == nil {
		t.Fatal("a data directory without service databases was backed up")
	}
}

func execSQL(t *testing.T, path, q string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(q); err != nil {
		t.Fatal(err)
	}
}

func countItems(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM items").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
