package api

import (
	"fmt"
	"time"
)

// backup-scheduler's endpoints (events.ServiceBackupScheduler).
const (
	// PlanList takes nothing and answers []PlanView.
	PlanList = "plan-list"
	// PlanShow takes PlanRequest and answers PlanDetail.
	PlanShow = "plan-show"
	// PlanSet takes PlanSetRequest and answers PlanView. The change
	// becomes a PlanChanged event that every host applies; the answer is
	// the plan once the answering host has applied it.
	PlanSet = "plan-set"
	// PlanDisable takes PlanRequest and answers PlanView (a PlanChanged,
	// as PlanSet).
	PlanDisable = "plan-disable"
	// PlanEnable takes PlanRequest and answers PlanView (a PlanChanged, as
	// PlanSet).
	PlanEnable = "plan-enable"
	// BackupList takes BackupListRequest and answers []BackupView.
	BackupList = "backup-list"
	// BackupVerify takes VerifyRequest and answers []VerifyResult.
	BackupVerify = "backup-verify"
	// CatalogRebuild takes RebuildRequest and answers []RebuildResult.
	CatalogRebuild = "catalog-rebuild"
)

// SelfPlan is the name of the built-in plan that backs up lifeboat's own
// service databases.
const SelfPlan = "lifeboat-self"

// DefaultMinKeep is a plan's min_keep when it sets none.
const DefaultMinKeep = 1

// Store kinds a plan can name.
const (
	StoreSQLite  = "sqlite"
	StoreFiles   = "files"
	StoreCommand = "command"
	// StoreSQLiteSet is lifeboat-self's kind: several SQLite databases.
	StoreSQLiteSet = "sqlite-set"
)

// States of a backup in the catalog.
const (
	BackupValid   = "valid"
	BackupInvalid = "invalid" // does not verify; never restored
	BackupPruning = "pruning" // being deleted by the retention rule
)

// Plan is a backup plan: when to back up which store, where to, and how
// long to keep what (the config file's backup.plans entry).
type Plan struct {
	// Name identifies the plan: letters, digits, '.', '_' and '-'.
	Name string `json:"name"`
	// Instance is the protected instance the store belongs to.
	Instance string `json:"instance"`
	// Description is for people.
	Description string `json:"description,omitempty"`
	// Schedule is d1,d2,...,dn/T (see lifeboat schedule explain).
	Schedule string `json:"schedule"`
	// Directory is where the plan's backups are written.
	Directory string `json:"directory"`
	// Store says what to back up and how.
	Store Store `json:"store"`
	// Hooks run around each dump (freeze and thaw).
	Hooks Hooks `json:"hooks,omitzero"`
	// Targets are the names of the sync targets the backups are shipped to.
	Targets []string `json:"targets,omitempty"`
	// Disabled plans take no backups and delete none.
	Disabled bool `json:"disabled"`
	// MinKeep is how many of the newest verified backups pruning never
	// deletes (DefaultMinKeep when nil).
	MinKeep *int `json:"min_keep,omitempty"`
}

// Store is a plan's store and how to copy it.
type Store struct {
	// Kind is sqlite, files or command (StoreSQLite, ...).
	Kind string `json:"kind"`
	// Path is the database file (sqlite) or the root of the tree (files).
	Path string `json:"path,omitempty"`
	// Include and Exclude select files of a files store (rsync-style
	// patterns: "data/", "*.tmp", "/logs").
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
	// Dump is a command store's dump command (program and arguments, no
	// shell); its stdout is the payload.
	Dump []string `json:"dump,omitempty"`
	// Load is the command that reads a dump on stdin back into the store.
	Load []string `json:"load,omitempty"`
	// Env is added to the dump and load commands' environment. In answers
	// its values are Redacted: only the names are shown.
	Env []string `json:"env,omitempty"`
	// Timeout bounds a dump command; zero is the service's default (1h).
	Timeout Duration `json:"timeout,omitzero"`
}

// Hooks are the commands run before and after each dump.
type Hooks struct {
	// Pre runs before the dump (freeze).
	Pre *Hook `json:"pre,omitempty"`
	// Post runs after the dump whenever Pre succeeded (thaw).
	Post *Hook `json:"post,omitempty"`
}

// Hook is one hook command.
type Hook struct {
	// Command is the program and its arguments (no shell).
	Command []string `json:"command"`
	// Timeout bounds it; zero is the service's default (30s).
	Timeout Duration `json:"timeout,omitzero"`
}

// Duration is a time.Duration written as "30s" in JSON.
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

// PlanView is a plan and its scheduler state.
type PlanView struct {
	Plan
	Origin        string     `json:"origin"` // config, api or builtin
	NextDueAt     *time.Time `json:"next_due_at,omitempty"`
	LastAttemptAt *time.Time `json:"last_attempt_at,omitempty"`
	LastBackup    string     `json:"last_backup,omitempty"`
	LastSuccessAt *time.Time `json:"last_success_at,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	LastErrorAt   *time.Time `json:"last_error_at,omitempty"`
	Backups       int        `json:"backups"` // valid backups in the catalog
	Invalid       int        `json:"invalid"` // backups that do not verify
	SteadyState   int        `json:"steady_state"`
	Doing         string     `json:"doing,omitempty"` // the job running now
	// LeaseBound says the plan's instance is declared in lifeboat.yaml's
	// instances section: only the host holding the instance's lease (its
	// active host, in the lifeboat-instances bucket) backs it up, so a
	// take is sent to that host. Otherwise every host that has the plan
	// backs up its own store.
	LeaseBound bool `json:"lease_bound,omitempty"`
}

// PlanDetail is a plan with its schedule's bands and its retention
// timeline: each backup with what a pruning pass now would do with it.
type PlanDetail struct {
	PlanView
	Bands     []Band     `json:"bands"`
	Retention []Retained `json:"retention"`
}

// Band is one band of a plan's schedule: the backups whose age is in
// [From, To), kept one per Spacing-long slot (pkg/schedule's Band; the
// durations travel as nanoseconds).
type Band struct {
	From, To time.Duration
	Spacing  time.Duration
	Keeps    int // slots in the band: the most backups it ever keeps
}

// Retained is one backup in a plan's retention timeline.
type Retained struct {
	Backup  string `json:"backup"`
	Age     string `json:"age"`
	AgeSecs int64  `json:"age_seconds"`
	State   string `json:"state"`
	Keep    bool   `json:"keep"`
	Rule    string `json:"rule"`
}

// BackupView is one backup in the catalog.
type BackupView struct {
	Plan         string     `json:"plan"`
	Name         string     `json:"name"`
	Dir          string     `json:"dir"`
	Time         time.Time  `json:"time"` // the time in the name
	Instance     string     `json:"instance"`
	StoreKind    string     `json:"store_kind"`
	Kind         string     `json:"kind"`
	Bytes        int64      `json:"bytes"`
	SHA256       string     `json:"sha256"` // of MANIFEST.json
	TakenAt      *time.Time `json:"taken_at,omitempty"`
	ConsistentAt *time.Time `json:"consistent_at,omitempty"`
	State        string     `json:"state"` // BackupValid, BackupInvalid or BackupPruning
	Problem      string     `json:"problem,omitempty"`
	CheckedAt    time.Time  `json:"checked_at"`
	VerifiedAt   *time.Time `json:"verified_at,omitempty"`
}

// PlanRequest names a plan.
type PlanRequest struct {
	Name string `json:"name"`
}

// PlanSetRequest creates a plan or changes the fields it sets. A new plan
// needs at least a schedule, a directory and a store. A store's Env is
// refused: the change travels to every host as an event, and secrets are
// declared in the config file instead.
type PlanSetRequest struct {
	Name        string    `json:"name"`
	Instance    *string   `json:"instance,omitempty"`
	Description *string   `json:"description,omitempty"`
	Schedule    *string   `json:"schedule,omitempty"`
	Directory   *string   `json:"directory,omitempty"`
	Store       *Store    `json:"store,omitempty"`
	Hooks       *Hooks    `json:"hooks,omitempty"`
	Targets     *[]string `json:"targets,omitempty"`
	MinKeep     *int      `json:"min_keep,omitempty"`
	Disabled    *bool     `json:"disabled,omitempty"`
}

// BackupListRequest filters the catalog by plan (all plans when empty).
type BackupListRequest struct {
	Plan string `json:"plan,omitempty"`
}

// VerifyRequest names what to verify in full: one backup by name, every
// backup of a plan, or (both empty) every backup of every plan.
type VerifyRequest struct {
	Plan string `json:"plan,omitempty"`
	Name string `json:"name,omitempty"`
}

// VerifyResult is one backup's verification.
type VerifyResult struct {
	Plan    string `json:"plan"`
	Name    string `json:"name"`
	State   string `json:"state"`
	Problem string `json:"problem,omitempty"`
	Bytes   int64  `json:"bytes"`
}

// RebuildRequest asks for a catalog rebuild of one plan (all when empty);
// Full verifies every file instead of checking the manifests.
type RebuildRequest struct {
	Plan string `json:"plan,omitempty"`
	Full bool   `json:"full,omitempty"`
}

// RebuildResult is what a catalog rebuild found in a plan's directory.
type RebuildResult struct {
	Plan      string   `json:"plan"`
	Dir       string   `json:"dir"`
	Total     int      `json:"total"`   // backups in the directory now
	Added     int      `json:"added"`   // found on disk, not in the catalog (copied in by hand)
	Removed   int      `json:"removed"` // in the catalog, gone from disk (deleted by hand)
	Invalid   int      `json:"invalid"` // do not verify
	Verified  int      `json:"verified"`
	Announced int      `json:"announced"`         // found on disk and valid: BackupTaken emitted
	Cleaned   []string `json:"cleaned,omitempty"` // temporary directories of interrupted writes, removed
	Completed int      `json:"pruned"`            // interrupted prunes finished
}

// BackupSchedulerStatus is backup-scheduler's part of its status reply
// (ServiceStatus.Details).
type BackupSchedulerStatus struct {
	Plans []PlanView `json:"plans"`
}

// Redacted stands for a secret's value in an answer.
const Redacted = "<redacted>"
