package events

import "time"

// RestoreStaged says a backup has been loaded into an instance's staging
// area (restore stage), where its records can be printed and deleted before
// a commit. restore emits it.
type RestoreStaged struct {
	// Instance is the instance being restored.
	Instance string `json:"instance" jsonschema:"required,minLength=1"`
	// Backup is the staged backup's directory name.
	Backup string `json:"backup" jsonschema:"required,minLength=1"`
	// Host is the host holding the staging area.
	Host string `json:"host,omitempty"`
	// Records is how many records the staged copy holds (rows of the
	// recovery table, or files of a files store).
	Records int64 `json:"records,omitempty" jsonschema:"minimum=0"`
	// Duration is how long staging took.
	Duration Millis `json:"duration_ms,omitempty" jsonschema:"minimum=0"`
	// StagedAt is when staging finished.
	StagedAt time.Time `json:"staged_at,omitzero"`
}

// RestoreCommitted says an instance's live store has been replaced by a
// backup, from staging (restore commit) or in one step (restore apply),
// after a safety copy of the old store was kept. restore emits it.
type RestoreCommitted struct {
	// Instance is the restored instance.
	Instance string `json:"instance" jsonschema:"required,minLength=1"`
	// Backup is the backup restored.
	Backup string `json:"backup" jsonschema:"required,minLength=1"`
	// Host is the host restored onto.
	Host string `json:"host,omitempty"`
	// Staged is true when the restore went through staging.
	Staged bool `json:"staged,omitempty"`
	// RecordsDeleted is how many records were deleted from the staged copy
	// before the commit.
	RecordsDeleted int64 `json:"records_deleted,omitempty" jsonschema:"minimum=0"`
	// SafetyCopy is the path of the copy of the store as it was before.
	SafetyCopy string `json:"safety_copy,omitempty"`
	// Duration is how long the restore took, hooks included.
	Duration Millis `json:"duration_ms,omitempty" jsonschema:"minimum=0"`
	// CommittedAt is when the new store went live.
	CommittedAt time.Time `json:"committed_at,omitzero"`
}

// RestoreFailed says a restore, a staging or the restore step of a failover
// failed; the live store is as it was (or back from the safety copy).
// restore emits it.
type RestoreFailed struct {
	// Instance is the instance being restored.
	Instance string `json:"instance" jsonschema:"required,minLength=1"`
	// Backup is the backup being restored, if one was chosen.
	Backup string `json:"backup,omitempty"`
	// Host is the host restoring.
	Host string `json:"host,omitempty"`
	// Error says what went wrong and what to do about it.
	Error string `json:"error" jsonschema:"required,minLength=1"`
	// Step names the step that failed, e.g. stage, stop-hook, restore,
	// start-hook, health-hook.
	Step string `json:"step,omitempty"`
	// Drill is true when the restore was part of a drill.
	Drill bool `json:"drill,omitempty"`
	// FailedAt is when it failed.
	FailedAt time.Time `json:"failed_at,omitzero"`
}
