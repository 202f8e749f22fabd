package backupscheduler

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"lifeboat.dev/pkg/config"
	"lifeboat.dev/pkg/instances"
	"lifeboat.dev/pkg/schedule"
	"lifeboat.dev/pkg/storekind/files"
)

// SelfPlan is the name of the built-in plan that backs up lifeboat's own
// service databases.
const SelfPlan = "lifeboat-self"

// Defaults of the built-in plan lifeboat-self.
const (
	// DefaultSelfSchedule keeps hourly backups for a day and daily ones for
	// a week.
	DefaultSelfSchedule = "1h,1d/7d"
	// DefaultMinKeep is how many of the newest verified backups pruning
	// never deletes.
	DefaultMinKeep = 1
)

// Store kinds a plan can name.
const (
	StoreSQLite  = "sqlite"
	StoreFiles   = "files"
	StoreCommand = "command"
	// StoreSQLiteSet is lifeboat-self's kind: several SQLite databases,
	// each copied as the sqlite kind does (see selfKind).
	StoreSQLiteSet = "sqlite-set"
)

// Config is the `backup:` section of lifeboat.yaml.
type Config struct {
	// Plans are the backup plans this host runs. Plans changed at run time
	// (lifeboat plan set) keep their changes across restarts until the
	// plan's declaration here changes.
	Plans []Plan `yaml:"plans" json:"plans"`
	// Self is the built-in plan lifeboat-self.
	Self SelfConfig `yaml:"self" json:"self"`
	// Instances are the instances lifeboat.yaml's top-level instances
	// section declares; UseInstances fills it. A plan whose instance is
	// one of them is that instance's plan: only the host holding the
	// instance's lease (its active host) backs it up, and each backup
	// records the lease's epoch. Any other plan backs up a store of each
	// host that has it, on every such host, with epoch 0.
	Instances instances.Config `yaml:"-" json:"-"`
}

// UseInstances takes the instances from lifeboat.yaml's top-level
// instances section (see Config.Instances).
func (c *Config) UseInstances(in instances.Config) { c.Instances = in }

// leaseBound says whether p is the plan of an instance the instances
// section declares, so that only the holder of the instance's lease backs
// it up. lifeboat-self never is: it backs up each host's own databases.
func (c Config) leaseBound(p Plan) bool {
	if p.Name == SelfPlan || p.Instance == "" {
		return false
	}
	_, ok := c.Instances[p.Instance]
	return ok
}

// checkInstance refuses a plan that names an instance the instances
// section does not declare, once the section declares any: the name would
// be a typo, and the plan would back up a standby's copy of the store on
// every host. A plan that names none (its instance defaults to its name)
// is an instance's plan only when an instance of that name is declared.
func (c Config) checkInstance(instance string) error {
	if instance == "" || len(c.Instances) == 0 {
		return nil
	}
	if _, ok := c.Instances[instance]; ok {
		return nil
	}
	return fieldErr("instance", "%q is not declared in the instances section (it declares %s): name one of them, or leave instance out for a plan of each host's own store",
		instance, strings.Join(c.Instances.Names(), ", "))
}

// SelfConfig shapes lifeboat-self, which backs up every lifeboat service
// database (<data>/<service>/state.db) with the sqlite kind. It is off by
// default; `self: {enabled: true}` turns it on.
type SelfConfig struct {
	// Enabled turns the plan on.
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Directory is where its backups go; default <data>/backups/lifeboat-self.
	// Put it on another disk than the data directory (wr's advice).
	Directory string `yaml:"directory" json:"directory,omitempty"`
	// Schedule defaults to 1h,1d/7d.
	Schedule string `yaml:"schedule" json:"schedule,omitempty"`
	// MinKeep defaults to 1.
	MinKeep *int `yaml:"min_keep" json:"min_keep,omitempty"`
	// Targets are the sync targets its backups are shipped to.
	Targets []string `yaml:"targets" json:"targets,omitempty"`
}

// Plan is a backup plan: when to back up which store, where to, and how
// long to keep what (CycleCloud's Backup Plan).
type Plan struct {
	// Name identifies the plan: letters, digits, '.', '_' and '-'.
	Name string `yaml:"name" json:"name"`
	// Instance is the protected instance the store belongs to; default the
	// plan's name. When the instances section declares it, only the host
	// holding its lease backs the plan up (Config.Instances).
	Instance string `yaml:"instance" json:"instance"`
	// Description is for people.
	Description string `yaml:"description" json:"description,omitempty"`
	// Schedule is d1,d2,...,dn/T (see lifeboat schedule explain).
	Schedule string `yaml:"schedule" json:"schedule"`
	// Directory is where the plan's backups are written; no two plans share
	// one.
	Directory string `yaml:"directory" json:"directory"`
	// Store says what to back up and how.
	Store Store `yaml:"store" json:"store"`
	// Hooks run around each dump (freeze and thaw).
	Hooks Hooks `yaml:"hooks" json:"hooks,omitzero"`
	// Targets are the names of the sync targets the backups are shipped to.
	Targets []string `yaml:"targets" json:"targets,omitempty"`
	// Disabled plans take no backups and delete none.
	Disabled bool `yaml:"disabled" json:"disabled"`
	// MinKeep is how many of the newest verified backups pruning never
	// deletes, even past T; default 1.
	MinKeep *int `yaml:"min_keep" json:"min_keep,omitempty"`
}

// Store is a plan's store and how to copy it.
type Store struct {
	// Kind is sqlite, files or command.
	Kind string `yaml:"kind" json:"kind"`
	// Path is the database file (sqlite) or the root of the tree (files).
	Path string `yaml:"path" json:"path,omitempty"`
	// Include and Exclude select files of a files store (rsync-style
	// patterns: "data/", "*.tmp", "/logs").
	Include []string `yaml:"include" json:"include,omitempty"`
	Exclude []string `yaml:"exclude" json:"exclude,omitempty"`
	// Dump is a command store's dump command (program and arguments, no
	// shell); its stdout is the payload.
	Dump []string `yaml:"dump" json:"dump,omitempty"`
	// Load is the command that reads a dump on stdin back into the store;
	// recorded in each backup for restore.
	Load []string `yaml:"load" json:"load,omitempty"`
	// Env is added to the dump and load commands' environment.
	Env []string `yaml:"env" json:"env,omitempty"`
	// Timeout bounds a dump command; default 1h.
	Timeout Duration `yaml:"timeout" json:"timeout,omitzero"`
}

// Hooks are the commands run before and after each dump.
type Hooks struct {
	// Pre runs before the dump (freeze); when it fails the dump is not
	// started.
	Pre *Hook `yaml:"pre" json:"pre,omitempty"`
	// Post runs after the dump whenever Pre succeeded (thaw); when it fails
	// the backup fails.
	Post *Hook `yaml:"post" json:"post,omitempty"`
}

// Hook is one hook command.
type Hook struct {
	// Command is the program and its arguments (no shell).
	Command []string `yaml:"command" json:"command"`
	// Timeout bounds it; default 30s. A hook still running then is killed.
	Timeout Duration `yaml:"timeout" json:"timeout,omitzero"`
}

// Duration is a time.Duration written as "30s" in YAML and JSON.
type Duration time.Duration

// MarshalText writes d as Go writes durations ("1m30s").
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads a duration such as "30s" or "5m".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (use e.g. 30s, 5m, 2h)", b)
	}
	if v < 0 {
		return fmt.Errorf("%q is negative", b)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML reads a duration from the config file, naming the line of
// a bad one.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if err := d.UnmarshalText([]byte(n.Value)); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

// FieldError is a plan whose Key (e.g. "schedule", "store.path") is wrong.
type FieldError struct {
	Key string
	Msg string
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Msg }

func fieldErr(key, format string, args ...any) error {
	return &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

var planName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Normalize checks p and fills its defaults: the instance, min_keep, and
// the directory and store path made absolute (relative ones are taken from
// the working directory). A problem is a *FieldError naming the key.
func (p Plan) Normalize() (Plan, error) {
	if !planName.MatchString(p.Name) {
		return p, fieldErr("name", "%q is not a plan name (1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit)", p.Name)
	}
	if p.Instance == "" {
		p.Instance = p.Name
	}
	if strings.ContainsAny(p.Instance, " \t\n*>") {
		return p, fieldErr("instance", "%q is not an instance name (no spaces, '*' or '>')", p.Instance)
	}
	if strings.TrimSpace(p.Schedule) == "" {
		return p, fieldErr("schedule", `missing: how often to back up and how long to keep what, e.g. "1h,1d/7d"`)
	}
	spec, err := schedule.Parse(p.Schedule)
	if err != nil {
		var pe *schedule.ParseError
		if errors.As(err, &pe) {
			return p, fieldErr("schedule", "%q: %s", pe.Spec, pe.Reason)
		}
		return p, fieldErr("schedule", "%v", err)
	}
	p.Schedule = spec.String()
	if strings.TrimSpace(p.Directory) == "" {
		return p, fieldErr("directory", "missing: the directory the plan's backups are written to")
	}
	if p.Directory, err = filepath.Abs(p.Directory); err != nil {
		return p, fieldErr("directory", "%v", err)
	}
	if p.MinKeep == nil {
		n := DefaultMinKeep
		p.MinKeep = &n
	} else if *p.MinKeep < 0 {
		return p, fieldErr("min_keep", "%d is negative; want 0 or more (default 1)", *p.MinKeep)
	}
	for i, t := range p.Targets {
		if strings.TrimSpace(t) == "" {
			return p, fieldErr(fmt.Sprintf("targets[%d]", i), "empty target name")
		}
	}
	if p.Store, err = p.Store.normalize(p.Name == SelfPlan); err != nil {
		return p, err
	}
	if p.Store.Kind == StoreFiles && within(p.Directory, p.Store.Path) {
		return p, fieldErr("directory", "%s is inside the files store's path %s, so every backup would hold the ones before it: move it, or back up a narrower tree", p.Directory, p.Store.Path)
	}
	for key, h := range map[string]*Hook{"hooks.pre": p.Hooks.Pre, "hooks.post": p.Hooks.Post} {
		if h != nil && (len(h.Command) == 0 || h.Command[0] == "") {
			return p, fieldErr(key+".command", "missing: the program and its arguments, e.g. [fsfreeze, --freeze, /data]")
		}
	}
	return p, nil
}

func (s Store) normalize(builtin bool) (Store, error) {
	var err error
	switch s.Kind {
	case StoreSQLite, StoreFiles:
		if strings.TrimSpace(s.Path) == "" {
			what := "the database file"
			if s.Kind == StoreFiles {
				what = "the root of the tree"
			}
			return s, fieldErr("store.path", "missing: %s to back up", what)
		}
		if s.Path, err = filepath.Abs(s.Path); err != nil {
			return s, fieldErr("store.path", "%v", err)
		}
		if s.Kind == StoreFiles {
			if _, err := files.New(files.Options{Root: s.Path, Include: s.Include, Exclude: s.Exclude}); err != nil {
				key := "store.exclude"
				if strings.Contains(err.Error(), "include") {
					key = "store.include"
				}
				return s, fieldErr(key, "%v", err)
			}
		} else if len(s.Include)+len(s.Exclude) > 0 {
			return s, fieldErr("store.include", "include and exclude are for files stores, not %s", s.Kind)
		}
	case StoreCommand:
		if len(s.Dump) == 0 || s.Dump[0] == "" {
			return s, fieldErr("store.dump", "missing: the dump command whose stdout is the payload, e.g. [pg_dump, --format=custom, mydb]")
		}
		if len(s.Load) == 0 || s.Load[0] == "" {
			return s, fieldErr("store.load", "missing: the command that loads a dump from stdin, e.g. [pg_restore, --clean, -d, mydb]; restore needs it")
		}
	case StoreSQLiteSet:
		if !builtin {
			return s, fieldErr("store.kind", "%q is the built-in plan %s's kind; use sqlite, files or command", s.Kind, SelfPlan)
		}
	case "":
		return s, fieldErr("store.kind", "missing: sqlite, files or command")
	default:
		return s, fieldErr("store.kind", "%q is not a store kind (use sqlite, files or command)", s.Kind)
	}
	return s, nil
}

// within says whether p is dir or below it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// Spec returns the parsed schedule of a normalized plan.
func (p Plan) Spec() schedule.Spec {
	s, _ := schedule.Parse(p.Schedule)
	return s
}

// minKeep is the plan's min_keep with its default.
func (p Plan) minKeep() int {
	if p.MinKeep == nil {
		return DefaultMinKeep
	}
	return *p.MinKeep
}

// hash identifies a declaration, to tell whether the config file changed it
// since it was last applied.
func (p Plan) hash() string {
	b, _ := json.Marshal(p)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// selfPlan is the built-in plan as configured, for a process whose data
// directory is dataDir.
func (c Config) selfPlan(dataDir string) Plan {
	p := Plan{
		Name:        SelfPlan,
		Instance:    "lifeboat",
		Description: "lifeboat's own service databases (<data>/<service>/state.db)",
		Schedule:    c.Self.Schedule,
		Directory:   c.Self.Directory,
		Store:       Store{Kind: StoreSQLiteSet, Path: dataDir},
		Targets:     c.Self.Targets,
		Disabled:    !c.Self.Enabled,
		MinKeep:     c.Self.MinKeep,
	}
	if p.Schedule == "" {
		p.Schedule = DefaultSelfSchedule
	}
	if p.Directory == "" {
		p.Directory = filepath.Join(dataDir, "backups", SelfPlan)
	}
	return p
}

// Normalize checks the section and fills its defaults for a process whose
// data directory is dataDir, returning every plan it declares, lifeboat-self
// last. A problem is a *FieldError whose key is relative to the section
// ("plans[1].schedule", "self.directory").
func (c Config) Normalize(dataDir string) ([]Plan, error) {
	var out []Plan
	names := map[string]int{}
	dirs := map[string]string{} // directory -> the key of the plan that has it
	for i, p := range c.Plans {
		prefix := fmt.Sprintf("plans[%d].", i)
		if p.Name == SelfPlan {
			return nil, fieldErr(prefix+"name", "%q is the built-in plan; configure it under self:", SelfPlan)
		}
		if p.Store.Kind == StoreSQLiteSet {
			return nil, fieldErr(prefix+"store.kind", "%q is the built-in plan %s's kind; use sqlite, files or command", p.Store.Kind, SelfPlan)
		}
		n, err := p.Normalize()
		if err == nil {
			err = c.checkInstance(p.Instance)
		}
		if err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				return nil, fieldErr(prefix+fe.Key, "%s", fe.Msg)
			}
			return nil, err
		}
		if j, ok := names[n.Name]; ok {
			return nil, fieldErr(prefix+"name", "%q is also the name of plans[%d]; plan names are unique", n.Name, j)
		}
		names[n.Name] = i
		if other, ok := dirs[n.Directory]; ok {
			return nil, fieldErr(prefix+"directory", "%s is also the directory of %s: two plans cannot share a backup directory (each prunes by its own schedule); give each its own", n.Directory, other)
		}
		dirs[n.Directory] = fmt.Sprintf("plans[%d] (%s)", i, n.Name)
		out = append(out, n)
	}
	self, err := c.selfPlan(dataDir).Normalize()
	if err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			key := fe.Key
			if key == "min_keep" || key == "schedule" || key == "directory" || strings.HasPrefix(key, "targets") {
				return nil, fieldErr("self."+key, "%s", fe.Msg)
			}
			return nil, fieldErr("self", "%s", fe.Msg)
		}
		return nil, err
	}
	if other, ok := dirs[self.Directory]; ok {
		return nil, fieldErr("self.directory", "%s is also the directory of %s: two plans cannot share a backup directory; give lifeboat-self its own", self.Directory, other)
	}
	return append(out, self), nil
}

// Validate checks the section for the config file f, whose key for it is
// prefix ("backup"), with errors naming the key and its line; dataDir is
// the process's data directory.
func (c Config) Validate(f *config.File, prefix, dataDir string) error {
	if _, err := c.Normalize(dataDir); err != nil {
		var fe *FieldError
		if !errors.As(err, &fe) {
			return f.Errorf(prefix, "%v", err)
		}
		// A missing key has no line: point at the nearest key above it
		// that the file has, and still name the missing one.
		key := prefix + "." + fe.Key
		at := key
		for at != prefix && !f.Has(at) {
			i := strings.LastIndexAny(at, ".[")
			if i < 0 {
				break
			}
			at = at[:i]
		}
		err := f.Errorf(at, "%s", fe.Msg)
		var ce *config.Error
		if errors.As(err, &ce) {
			ce.Key = key
		}
		return err
	}
	return nil
}
