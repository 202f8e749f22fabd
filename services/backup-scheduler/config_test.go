package backupscheduler

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"lifeboat.dev/pkg/config"
)

func TestNormalizeRefusesBadPlans(t *testing.T) {
	t.Parallel()
	ok := func() Plan {
		return Plan{Name: "wr", Schedule: "1h,1d/7d", Directory: "/b/wr", Store: Store{Kind: StoreSQLite, Path: "/var/lib/wr/db"}}
	}
	for _, tc := range []struct {
		name      string
		change    func(p *Plan)
		key, want string
	}{
		{"bad name", func(p *Plan) { p.Name = "a b" }, "name", "not a plan name"},
		{"no schedule", func(p *Plan) { p.Schedule = "" }, "schedule", "missing"},
		{"schedule not a multiple", func(p *Plan) { p.Schedule = "5m,7m/1d" }, "schedule", `"7m" is not a multiple of "5m"`},
		{"schedule unit", func(p *Plan) { p.Schedule = "1x/1d" }, "schedule", "unknown unit"},
		{"no directory", func(p *Plan) { p.Directory = " " }, "directory", "missing"},
		{"no store kind", func(p *Plan) { p.Store.Kind = "" }, "store.kind", "missing"},
		{"unknown store kind", func(p *Plan) { p.Store.Kind = "tape" }, "store.kind", `"tape" is not a store kind`},
		{"sqlite without path", func(p *Plan) { p.Store.Path = "" }, "store.path", "the database file"},
		{"files without path", func(p *Plan) { p.Store = Store{Kind: StoreFiles} }, "store.path", "the root of the tree"},
		{"files bad pattern", func(p *Plan) { p.Store = Store{Kind: StoreFiles, Path: "/srv", Exclude: []string{"[z-a"}} }, "store.exclude", "exclude"},
		{"sqlite with excludes", func(p *Plan) { p.Store.Exclude = []string{"logs/"} }, "store.include", "files stores"},
		{"files store holding its backups", func(p *Plan) { p.Store = Store{Kind: StoreFiles, Path: "/b"} }, "directory", "inside the files store"},
		{"command without dump", func(p *Plan) { p.Store = Store{Kind: StoreCommand, Load: []string{"psql"}} }, "store.dump", "missing"},
		{"command without load", func(p *Plan) { p.Store = Store{Kind: StoreCommand, Dump: []string{"pg_dump"}} }, "store.load", "restore needs it"},
		{"the built-in kind", func(p *Plan) { p.Store.Kind = StoreSQLiteSet }, "store.kind", "built-in"},
		{"negative min_keep", func(p *Plan) { n := -1; p.MinKeep = &n }, "min_keep", "negative"},
		{"empty target", func(p *Plan) { p.Targets = []string{"cold", ""} }, "targets[1]", "empty"},
		{"hook without command", func(p *Plan) { p.Hooks.Pre = &Hook{} }, "hooks.pre.command", "missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := ok()
			tc.change(&p)
			_, err := p.Normalize()
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Key != tc.key || !strings.Contains(fe.Msg, tc.want) {
				t.Fatalf("Normalize: %v; want %s: ...%s...", err, tc.key, tc.want)
			}
		})
	}
	p, err := ok().Normalize()
	if err != nil || p.Instance != "wr" || *p.MinKeep != DefaultMinKeep || p.Schedule != "1h,1d/7d" {
		t.Fatalf("Normalize of a good plan: %+v, %v", p, err)
	}
}

// TestValidateNamesKeyAndLine: the config file's errors name the key and
// its line, the way every other section's do.
func TestValidateNamesKeyAndLine(t *testing.T) {
	t.Parallel()
	type file struct {
		Backup Config `yaml:"backup"`
	}
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"invalid schedule", `
backup:
  plans:
    - name: wr
      schedule: 5m,7m/1d
      directory: /b/wr
      store: {kind: sqlite, path: /db}
`, `lifeboat.yaml:5: backup.plans[0].schedule: "5m,7m/1d": "7m" is not a multiple of "5m"`},
		{"missing store path", `
backup:
  plans:
    - name: wr
      schedule: 1h,1d/7d
      directory: /b/wr
      store:
        kind: sqlite
`, `lifeboat.yaml:7: backup.plans[0].store.path: missing`},
		{"shared directory", `
backup:
  plans:
    - name: wr
      schedule: 1h,1d/7d
      directory: /b/shared
      store: {kind: sqlite, path: /db}
    - name: aurora
      schedule: 1h,1d/7d
      directory: /b/shared/
      store: {kind: sqlite, path: /db2}
`, `lifeboat.yaml:10: backup.plans[1].directory: /b/shared is also the directory of plans[0] (wr)`},
		{"unknown store kind", `
backup:
  plans:
    - name: wr
      schedule: 1h,1d/7d
      directory: /b/wr
      store:
        kind: tape
`, `lifeboat.yaml:8: backup.plans[0].store.kind: "tape" is not a store kind (use sqlite, files or command)`},
		{"duplicate name", `
backup:
  plans:
    - {name: wr, schedule: 1h/1d, directory: /b/1, store: {kind: sqlite, path: /db}}
    - {name: wr, schedule: 1h/1d, directory: /b/2, store: {kind: sqlite, path: /db}}
`, `backup.plans[1].name: "wr" is also the name of plans[0]`},
		{"self shares a directory", `
backup:
  plans:
    - {name: wr, schedule: 1h/1d, directory: /data/backups/lifeboat-self, store: {kind: sqlite, path: /db}}
  self:
    enabled: true
`, `backup.self.directory: /data/backups/lifeboat-self is also the directory of plans[0] (wr)`},
		{"self bad schedule", `
backup:
  self: {enabled: true, schedule: 1h}
`, `lifeboat.yaml:3: backup.self.schedule: "1h": missing "/T"`},
		{"bad hook timeout", `
backup:
  plans:
    - name: wr
      schedule: 1h,1d/7d
      directory: /b/wr
      store: {kind: sqlite, path: /db}
      hooks:
        pre: {command: [fsfreeze, -f, /data], timeout: soon}
`, `lifeboat.yaml:9`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var v file
			f, err := config.Parse("lifeboat.yaml", []byte(tc.yaml), &v)
			if err == nil {
				err = v.Backup.Validate(f, "backup", "/data")
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant ...%s...", err, tc.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	var v struct {
		Backup Config `yaml:"backup"`
	}
	f, err := config.Parse("lifeboat.yaml", []byte(`
backup:
  plans:
    - name: files
      schedule: 5m,15m,1h,2h,4h,8h,1d/7d
      directory: backups/files
      store: {kind: files, path: /opt/cycle_server, exclude: [data/, logs/, license.dat]}
      hooks: {pre: {command: [sync], timeout: 10s}}
      targets: [cold]
  self: {enabled: true}
`), &v)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Backup.Validate(f, "backup", "/data"); err != nil {
		t.Fatal(err)
	}
	plans, err := v.Backup.Normalize("/data")
	if err != nil {
		t.Fatal(err)
	}
	if len(plans) != 2 {
		t.Fatalf("%d plans", len(plans))
	}
	p, self := plans[0], plans[1]
	if !filepath.IsAbs(p.Directory) || p.Instance != "files" || *p.MinKeep != 1 || p.Hooks.Pre.Timeout.String() != "10s" || p.Disabled {
		t.Errorf("plan %+v", p)
	}
	if self.Name != SelfPlan || self.Disabled || self.Schedule != DefaultSelfSchedule || self.Directory != "/data/backups/lifeboat-self" ||
		self.Store.Kind != StoreSQLiteSet || self.Store.Path != "/data" {
		t.Errorf("lifeboat-self %+v", self)
	}
	var off Config
	plans, err = off.Normalize("/data")
	if err != nil || len(plans) != 1 || !plans[0].Disabled {
		t.Errorf("with no section: %+v %v", plans, err)
	}
}

func (d Duration) String() string { b, _ := d.MarshalText(); return string(b) }

// FuzzNormalize: any plan either is refused with a named key or normalizes
// to a plan that normalizes to itself.
func FuzzNormalize(f *testing.F) {
	f.Add("wr", "1h,1d/7d", "/b", "sqlite", "/db", 1)
	f.Add("x", "5m,15m,1h/1d", "rel", "files", "/srv", 0)
	f.Add("", "", "", "", "", -1)
	f.Fuzz(func(t *testing.T, name, sched, dir, kind, path string, minKeep int) {
		p := Plan{Name: name, Schedule: sched, Directory: dir, Store: Store{Kind: kind, Path: path, Dump: []string{"d"}, Load: []string{"l"}}, MinKeep: &minKeep}
		n, err := p.Normalize()
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Key == "" || fe.Msg == "" {
				t.Fatalf("error %v names no key", err)
			}
			return
		}
		again, err := n.Normalize()
		if err != nil || again.hash() != n.hash() {
			t.Fatalf("normalized plan %+v renormalizes to %+v, %v", n, again, err)
		}
	})
}
