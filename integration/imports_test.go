package integration

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is the repository, one level above this module.
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

// TestServicesImportNoOtherService enforces DESIGN §1: a service imports
// events/, pkg/ and sql/, never another service (nor the binary or these
// tests); pkg/ knows no service; events/ depends on nothing in the repo.
func TestServicesImportNoOtherService(t *testing.T) {
	root := repoRoot(t)
	rules := []struct {
		dir     string
		allowed func(self, imp string) bool
	}{
		{"services", func(self, imp string) bool {
			return !strings.HasPrefix(imp, "lifeboat.dev/") ||
				strings.HasPrefix(imp, "lifeboat.dev/events") ||
				strings.HasPrefix(imp, "lifeboat.dev/pkg") ||
				imp == "lifeboat.dev/sql" ||
				imp == self || strings.HasPrefix(imp, self+"/")
		}},
		{"pkg", func(_, imp string) bool {
			return !strings.HasPrefix(imp, "lifeboat.dev/") ||
				strings.HasPrefix(imp, "lifeboat.dev/events") ||
				strings.HasPrefix(imp, "lifeboat.dev/pkg") ||
				imp == "lifeboat.dev/sql"
		}},
		{"events", func(_, imp string) bool {
			return !strings.HasPrefix(imp, "lifeboat.dev/") || strings.HasPrefix(imp, "lifeboat.dev/events")
		}},
	}
	checked := 0
	for _, r := range rules {
		base := filepath.Join(root, r.dir)
		err := filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			parts := strings.Split(filepath.ToSlash(rel), "/")
			self := "lifeboat.dev/" + parts[0]
			if parts[0] == "services" {
				self = "lifeboat.dev/services/" + parts[1]
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			checked++
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if !r.allowed(self, p) {
					t.Errorf("%s imports %s: a service imports only events/, pkg/ and sql/ (DESIGN §1)", rel, p)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked < 20 {
		t.Fatalf("only %d Go files checked: is the repository layout as DESIGN §1 says?", checked)
	}
}
