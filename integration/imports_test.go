package integration

import (
	"fmt"
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

// importRules are DESIGN §1's rules on imports, by directory; a file
// follows the rule of the longest dir that holds it.
var importRules = []struct {
	dir     string
	why     string
	allowed func(file, self, imp string) bool
}{
	{"services", "a service imports only events/, pkg/ and sql/, never another service (DESIGN §1)", func(_, self, imp string) bool {
		return !strings.HasPrefix(imp, "lifeboat.dev/") ||
			strings.HasPrefix(imp, "lifeboat.dev/events") ||
			strings.HasPrefix(imp, "lifeboat.dev/pkg") ||
			imp == "lifeboat.dev/sql" ||
			imp == self || strings.HasPrefix(imp, self+"/")
	}},
	{"pkg", "pkg/ knows no service (DESIGN §1)", func(_, _, imp string) bool {
		return !strings.HasPrefix(imp, "lifeboat.dev/") ||
			strings.HasPrefix(imp, "lifeboat.dev/events") ||
			strings.HasPrefix(imp, "lifeboat.dev/pkg") ||
			imp == "lifeboat.dev/sql"
	}},
	{"events", "events/ depends on nothing in the repository (DESIGN §1)", func(_, _, imp string) bool {
		return !strings.HasPrefix(imp, "lifeboat.dev/") || strings.HasPrefix(imp, "lifeboat.dev/events")
	}},
	{"events/api", "the API contract is the standard library and lifeboat.dev/events only, so that any client can use it", func(_, _, imp string) bool {
		return isStdlib(imp) || imp == "lifeboat.dev/events" || imp == "lifeboat.dev/events/api"
	}},
	{"tools", "only `lifeboat up` (up.go, up_config.go) links service code; the other commands use events/api and pkg/client", func(file, _, imp string) bool {
		if !strings.HasPrefix(imp, "lifeboat.dev/services/") && imp != "lifeboat.dev/services" {
			return true
		}
		return file == "tools/lifeboat/up.go" || file == "tools/lifeboat/up_config.go"
	}},
}

// isStdlib says whether imp is a standard library package: its first
// element has no dot.
func isStdlib(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".")
}

// importAllowed checks one import of the file at rel (slash-separated,
// from the repository root) against its rule; the error says why not.
func importAllowed(rel, imp string) error {
	parts := strings.Split(rel, "/")
	self := "lifeboat.dev/" + parts[0]
	if parts[0] == "services" && len(parts) > 1 {
		self = "lifeboat.dev/services/" + parts[1]
	}
	rule := -1
	for i, r := range importRules {
		if strings.HasPrefix(rel, r.dir+"/") && (rule < 0 || len(r.dir) > len(importRules[rule].dir)) {
			rule = i
		}
	}
	if rule < 0 || importRules[rule].allowed(rel, self, imp) {
		return nil
	}
	return fmt.Errorf("%s imports %s: %s", rel, imp, importRules[rule].why)
}

// TestServicesImportNoOtherService enforces DESIGN §1: a service imports
// events/, pkg/ and sql/, never another service (nor the binary or these
// tests); pkg/ knows no service; events/ depends on nothing in the repo,
// and its API contract (events/api) on the standard library and events/
// alone; of the CLI, only `lifeboat up` links service code.
func TestServicesImportNoOtherService(t *testing.T) {
	root := repoRoot(t)
	checked := map[string]int{}
	for _, r := range importRules {
		if r.dir == "events/api" {
			continue // walked with events
		}
		base := filepath.Join(root, r.dir)
		err := filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			rel = filepath.ToSlash(rel)
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			checked[r.dir]++
			if strings.HasPrefix(rel, "events/api/") {
				checked["events/api"]++
			}
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if err := importAllowed(rel, p); err != nil {
					t.Error(err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range importRules {
		if checked[r.dir] == 0 {
			t.Errorf("no Go file checked under %s/: is the repository laid out as DESIGN §1 says?", r.dir)
		}
	}
	if n := checked["services"] + checked["pkg"] + checked["events"] + checked["tools"]; n < 20 {
		t.Fatalf("only %d Go files checked: is the repository layout as DESIGN §1 says?", n)
	}
}

// TestImportRulesCatchViolations: each rule refuses what it is for, so
// that the walk above cannot pass by checking nothing.
func TestImportRulesCatchViolations(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		file, imp string
		ok        bool
	}{
		{"services/sync/service.go", "lifeboat.dev/services/restore", false},
		{"services/sync/service.go", "lifeboat.dev/services/sync/internal/db", true},
		{"services/sync/service.go", "lifeboat.dev/pkg/service", true},
		{"pkg/bus/bus.go", "lifeboat.dev/services/sync", false},
		{"events/catalog.go", "lifeboat.dev/pkg/bus", false},
		{"events/catalog.go", "github.com/invopop/jsonschema", true},
		{"events/api/backup.go", "lifeboat.dev/events", true},
		{"events/api/backup.go", "time", true},
		{"events/api/backup.go", "github.com/invopop/jsonschema", false},
		{"events/api/backup.go", "lifeboat.dev/pkg/schedule", false},
		{"events/api/backup.go", "lifeboat.dev/services/backup-scheduler", false},
		{"tools/lifeboat/backup.go", "lifeboat.dev/services/backup-scheduler", false},
		{"tools/lifeboat/dns.go", "lifeboat.dev/services/dns-updater/provider", false},
		{"tools/lifeboat/dns_test.go", "lifeboat.dev/services/dns-updater", false},
		{"tools/lifeboat/backup.go", "lifeboat.dev/events/api", true},
		{"tools/lifeboat/backup.go", "lifeboat.dev/pkg/client", true},
		{"tools/lifeboat/up.go", "lifeboat.dev/services/backup-scheduler", true},
		{"tools/lifeboat/up_config.go", "lifeboat.dev/services/dns-updater", true},
	} {
		if err := importAllowed(tc.file, tc.imp); (err == nil) != tc.ok {
			t.Errorf("importAllowed(%s, %s) = %v, want allowed %v", tc.file, tc.imp, err, tc.ok)
		}
	}
}

// TestServicesUseOnlyWhatTheRuntimeOffers: no service's code reaches the
// raw NATS connection or JetStream behind the runtime (Deps.Bus), where a
// publish would bypass the outbox and a subscription the service's
// lifecycle; core NATS goes through rt.Listen, events through tx.Emit.
func TestServicesUseOnlyWhatTheRuntimeOffers(t *testing.T) {
	root := filepath.Join(repoRoot(t), "services")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, bad := range []string{".Deps.Bus", "bus.NewPublisher", "bus.NewSubscriber"} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s uses %s: go through the runtime (tx.Emit, rt.Listen, service.On)", path, bad)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
