package events

import "time"

// PlanAction is what an operator did to a backup plan at run time.
type PlanAction string

// The run-time changes of a backup plan.
const (
	// PlanActionSet creates a plan or changes the fields it gives
	// (lifeboat plan set).
	PlanActionSet PlanAction = "set"
	// PlanActionDisable stops a plan: it takes no backups and deletes none
	// (lifeboat plan disable).
	PlanActionDisable PlanAction = "disable"
	// PlanActionEnable starts a disabled plan again (lifeboat plan enable).
	PlanActionEnable PlanAction = "enable"
)

// PlanChanged says an operator changed a backup plan at run time. The
// backup-scheduler that answers the request emits it once the change
// validates against its state, and every host's backup-scheduler applies
// it, in stream order, to its own plans: the change is known everywhere,
// and survives the loss of the host that took it. Who asked and from where
// is the envelope's (ce-source, ce-time, the trace).
//
// A set carries the fields the operator gave, not the whole plan: a plan's
// other fields may be each host's own (a directory the config file gives
// with {host}, lifeboat-self's store, which is the host's data directory),
// and they are left as each host has them. A plan the config file declares
// keeps the change until the file's declaration of it changes.
type PlanChanged struct {
	// Plan is the plan's name.
	Plan string `json:"plan" jsonschema:"required,minLength=1"`
	// Action is what was done: set, disable or enable.
	Action PlanAction `json:"action" jsonschema:"required,enum=set,enum=disable,enum=enable"`
	// Set holds, for a set, the fields the operator gave; a field absent
	// keeps the plan's current value. A new plan needs at least its
	// schedule, directory and store.
	Set *PlanFields `json:"set,omitempty"`
	// ChangedAt is when the change was asked for, by the clock of the host
	// that took the request: every host records this time, never its own.
	ChangedAt time.Time `json:"changed_at" jsonschema:"required"`
}

// PlanFields are the fields of a backup plan a set gives; one absent is
// not given. Paths are absolute.
type PlanFields struct {
	// Instance is the protected instance the store belongs to; empty is
	// the plan's name.
	Instance *string `json:"instance,omitempty"`
	// Description is for people.
	Description *string `json:"description,omitempty"`
	// Schedule is d1,d2,...,dn/T.
	Schedule *string `json:"schedule,omitempty"`
	// Directory is where the plan's backups are written.
	Directory *string `json:"directory,omitempty"`
	// Store replaces the plan's whole store.
	Store *PlanStore `json:"store,omitempty"`
	// Hooks replace the plan's hooks, both of them.
	Hooks *PlanHooks `json:"hooks,omitempty"`
	// Targets replace the sync targets the plan's backups are shipped to.
	Targets *[]string `json:"targets,omitempty"`
	// MinKeep is how many of the newest verified backups pruning never
	// deletes.
	MinKeep *int `json:"min_keep,omitempty" jsonschema:"minimum=0"`
	// Disabled stops (true) or starts (false) the plan.
	Disabled *bool `json:"disabled,omitempty"`
}

// PlanStore is a plan's store as a set gives it. It has no environment: a
// dump command's environment holds secrets, which never travel in events;
// it is declared in the config file.
type PlanStore struct {
	// Kind is sqlite, files or command.
	Kind string `json:"kind" jsonschema:"required,enum=sqlite,enum=files,enum=command"`
	// Path is the database file (sqlite) or the root of the tree (files).
	Path string `json:"path,omitempty"`
	// Include selects the files of a files store (rsync-style patterns).
	Include []string `json:"include,omitempty"`
	// Exclude leaves files of a files store out (rsync-style patterns).
	Exclude []string `json:"exclude,omitempty"`
	// Dump is a command store's dump command (program and arguments).
	Dump []string `json:"dump,omitempty"`
	// Load is the command that reads a dump on stdin back into the store.
	Load []string `json:"load,omitempty"`
	// Timeout bounds a dump command; absent is the service's default.
	Timeout Millis `json:"timeout_ms,omitempty" jsonschema:"minimum=0"`
}

// PlanHooks are the commands run before and after each dump.
type PlanHooks struct {
	// Pre runs before the dump (freeze).
	Pre *PlanHook `json:"pre,omitempty"`
	// Post runs after the dump whenever Pre succeeded (thaw).
	Post *PlanHook `json:"post,omitempty"`
}

// PlanHook is one hook command.
type PlanHook struct {
	// Command is the program and its arguments (no shell).
	Command []string `json:"command" jsonschema:"required,minItems=1"`
	// Timeout bounds it; absent is the service's default.
	Timeout Millis `json:"timeout_ms,omitempty" jsonschema:"minimum=0"`
}
