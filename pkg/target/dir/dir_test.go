package dir_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/chunk"
	"lifeboat.dev/pkg/target"
	"lifeboat.dev/pkg/target/dir"
	"lifeboat.dev/pkg/target/targettest"
)

func TestConformance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "standby", "backups")
	targettest.Run(t, targettest.Kind{
		Open:          func(t *testing.T) target.Target { return dir.New(path, "db") },
		OpenOtherPlan: func(t *testing.T) target.Target { return dir.New(path, "static") },
		Check: func(t *testing.T, srcDir, name string) {
			t.Helper()
			// Reading only the target's disk, as a restore would.
			m, err := backup.Verify(context.Background(), path, name)
			if err != nil {
				t.Fatal(err)
			}
			// Byte-identical to the source, manifest included.
			for _, rel := range append([]string{backup.ManifestName}, paths(m)...) {
				a, _ := os.ReadFile(filepath.Join(srcDir, name, rel))
				b, err := os.ReadFile(filepath.Join(path, name, rel))
				if err != nil || !bytes.Equal(a, b) {
					t.Fatalf("%s/%s differs from the source's (%v)", name, rel, err)
				}
				sa, _ := os.Stat(filepath.Join(srcDir, name, rel))
				sb, _ := os.Stat(filepath.Join(path, name, rel))
				if sa.Mode() != sb.Mode() {
					t.Errorf("%s/%s: mode %v, the source's %v", name, rel, sb.Mode(), sa.Mode())
				}
			}
		},
		Corrupt: func(t *testing.T, h chunk.Hash) {
			p := filepath.Join(path, dir.StateDir, "chunks", h.String())
			if err := os.WriteFile(p, []byte("bit rot"), 0o640); err != nil {
				t.Fatal(err)
			}
		},
	})
	// Nothing staged is left once every transfer committed.
	left, _ := os.ReadDir(filepath.Join(path, dir.StateDir, "chunks"))
	if len(left) != 0 {
		t.Errorf("%d chunks left staged after every transfer committed", len(left))
	}
}

func paths(m backup.Manifest) []string {
	var out []string
	for _, f := range m.Files {
		out = append(out, f.Path)
	}
	return out
}
