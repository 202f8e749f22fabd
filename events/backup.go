package events

import "time"

// BackupKind says why and how a backup was taken.
type BackupKind string

// The kinds of backup.
const (
	// BackupScheduled is taken by a plan's schedule.
	BackupScheduled BackupKind = "scheduled"
	// BackupManual is taken on request (lifeboat backup take).
	BackupManual BackupKind = "manual"
	// BackupHash is a full backup whose transfer sends only the chunks whose
	// hashes differ at the target; volume-monitor asks for one on overflow.
	BackupHash BackupKind = "hash"
	// BackupFull is a full backup whose transfer sends everything.
	BackupFull BackupKind = "full"
)

// BackupTaken says a complete backup exists under its final name and
// verifies. backup-scheduler emits it after every backup; sync ships it to
// the plan's targets, restore counts it among the instance's restore points,
// and volume-monitor clears an overflow after a hash backup.
type BackupTaken struct {
	// Plan is the backup plan that took it.
	Plan string `json:"plan" jsonschema:"required,minLength=1"`
	// Instance is the protected instance whose store was backed up.
	Instance string `json:"instance" jsonschema:"required,minLength=1"`
	// Backup is the backup's directory name,
	// e.g. backup-2015-12-23_12-19-17-0500.
	Backup string `json:"backup" jsonschema:"required,minLength=1"`
	// Kind says why and how it was taken.
	Kind BackupKind `json:"kind" jsonschema:"required,enum=scheduled,enum=manual,enum=hash,enum=full"`
	// Store is the store kind: sqlite, files or command.
	Store string `json:"store,omitempty"`
	// Host is the host whose backup directory holds the backup.
	Host string `json:"host,omitempty"`
	// Dir is the plan's backup directory on Host; the backup is Dir/Backup.
	Dir string `json:"dir,omitempty"`
	// Targets are the plan's sync targets: names of lifeboat.yaml's
	// sync.targets, or "standby" (the instance's other hosts); none means
	// standby.
	Targets []string `json:"targets,omitempty"`
	// Bytes is the total size of the backup's files.
	Bytes int64 `json:"bytes" jsonschema:"minimum=0"`
	// SHA256 is the hex SHA-256 of the backup's MANIFEST.json, which in
	// turn holds the size and SHA-256 of every file.
	SHA256 string `json:"sha256,omitempty" jsonschema:"pattern=^[0-9a-f]{64}$"`
	// Files lists the backup's files as its manifest does, so a receiver
	// can verify a copy without reading the source's manifest.
	Files []BackupFile `json:"files,omitempty"`
	// FormatVersion is the manifest's format version.
	FormatVersion int `json:"format_version,omitempty" jsonschema:"minimum=0"`
	// TakenAt is when the backup was taken: the time in its name.
	TakenAt time.Time `json:"taken_at" jsonschema:"required"`
	// ConsistentAt is the moment the backup's data is consistent as of;
	// a restore from it loses what was written after (the RPO).
	ConsistentAt time.Time `json:"consistent_at" jsonschema:"required"`
	// Duration is how long taking the backup took.
	Duration Millis `json:"duration_ms,omitempty" jsonschema:"minimum=0"`
	// RequestID is the id of the backup-scheduler.take command this backup
	// answers; empty for scheduled backups.
	RequestID string `json:"request_id,omitempty"`
	// Epoch is the epoch of the instance's lease under which the backup
	// was taken, as its manifest records it: restore prefers the newest
	// backup of the highest epoch. 0 (absent) for a plan whose instance
	// has no lease (a plan of a host's own store).
	Epoch uint64 `json:"epoch,omitempty" jsonschema:"minimum=0"`
}

// BackupFile is one file of a backup, as its manifest lists it.
type BackupFile struct {
	// Path is the file's path relative to the backup directory.
	Path string `json:"path" jsonschema:"required,minLength=1"`
	// Bytes is the file's size.
	Bytes int64 `json:"bytes" jsonschema:"required,minimum=0"`
	// SHA256 is the hex SHA-256 of the file's content.
	SHA256 string `json:"sha256" jsonschema:"required,pattern=^[0-9a-f]{64}$"`
}

// BackupFailed says a backup could not be taken; nothing was left under a
// final name and the plan retries at its next slot. backup-scheduler emits
// it, also in answer to a backup-scheduler.take that failed.
type BackupFailed struct {
	// Plan is the backup plan whose backup failed.
	Plan string `json:"plan" jsonschema:"required,minLength=1"`
	// Instance is the plan's instance.
	Instance string `json:"instance,omitempty"`
	// Kind is the kind of backup that was attempted.
	Kind BackupKind `json:"kind,omitempty" jsonschema:"enum=scheduled,enum=manual,enum=hash,enum=full"`
	// Backup is the name the backup would have had, if one was chosen.
	Backup string `json:"backup,omitempty"`
	// Host is the host that tried.
	Host string `json:"host,omitempty"`
	// Error says what went wrong and what to do about it.
	Error string `json:"error" jsonschema:"required,minLength=1"`
	// Step names the step that failed, e.g. pre-hook, copy,
	// integrity_check, manifest, rename, post-hook.
	Step string `json:"step,omitempty"`
	// FailedAt is when it failed.
	FailedAt time.Time `json:"failed_at,omitzero"`
	// RequestID is the id of the backup-scheduler.take command this
	// failure answers; empty for scheduled backups.
	RequestID string `json:"request_id,omitempty"`
}

// BackupPruned says backups were deleted by a plan's retention rule.
// backup-scheduler emits it after each pruning pass that deleted something;
// sync prunes the same backups at the plan's targets.
type BackupPruned struct {
	// Plan is the backup plan whose backups were pruned.
	Plan string `json:"plan" jsonschema:"required,minLength=1"`
	// Instance is the plan's instance.
	Instance string `json:"instance,omitempty"`
	// Host is the host whose backup directory was pruned.
	Host string `json:"host,omitempty"`
	// Targets are the plan's sync targets, as BackupTaken's: sync prunes
	// the same backups there.
	Targets []string `json:"targets,omitempty"`
	// Pruned lists each deleted backup and the rule that deleted it.
	Pruned []PrunedBackup `json:"pruned" jsonschema:"required,minItems=1"`
	// Kept is how many backups of the plan remain.
	Kept int `json:"kept" jsonschema:"minimum=0"`
	// PrunedAt is when the pass ran.
	PrunedAt time.Time `json:"pruned_at,omitzero"`
}

// PrunedBackup is one backup a pruning pass deleted, and why.
type PrunedBackup struct {
	// Backup is the deleted backup's directory name.
	Backup string `json:"backup" jsonschema:"required,minLength=1"`
	// Reason is the rule that deleted it, e.g. "band 2 (1d), slot 3
	// already holds an older backup" or "older than 7d".
	Reason string `json:"reason" jsonschema:"required,minLength=1"`
}
