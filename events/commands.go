package events

// BackupTake asks backup-scheduler to take a backup of a plan now
// (lifeboat backup take; volume-monitor's hash backup on overflow). It is
// answered with BackupTaken or BackupFailed carrying the command's id as
// request_id.
type BackupTake struct {
	// Plan is the plan to back up.
	Plan string `json:"plan" jsonschema:"required,minLength=1"`
	// Kind is manual (the default when empty), hash or full.
	Kind BackupKind `json:"kind,omitempty" jsonschema:"enum=manual,enum=hash,enum=full"`
	// Reason says who asked and why, for the record.
	Reason string `json:"reason,omitempty"`
}

// SyncKick asks sync to retry pending transfers now instead of waiting out
// their backoff (walb's kick_all): those of one target, of every target on
// one host, or of every target when both are empty.
type SyncKick struct {
	// Target is the target to kick.
	Target string `json:"target,omitempty"`
	// Host kicks every target on this host.
	Host string `json:"host,omitempty"`
}

// SyncStartSynchronizing asks sync to put a target in synchronizing mode:
// it receives every new backup again, starting with what it missed.
type SyncStartSynchronizing struct {
	// Target is the target to start.
	Target string `json:"target" jsonschema:"required,minLength=1"`
}

// SyncStopSynchronizing asks sync to put a target in stopped mode: it
// receives nothing until started again.
type SyncStopSynchronizing struct {
	// Target is the target to stop.
	Target string `json:"target" jsonschema:"required,minLength=1"`
}

// SyncPromote asks sync to make a secondary target primary; sync refuses,
// saying why, unless the target is synchronizing and complete.
type SyncPromote struct {
	// Target is the secondary target to promote.
	Target string `json:"target" jsonschema:"required,minLength=1"`
}

// RestoreFailover asks restore to fail an instance over (lifeboat
// failover): the restore service on the chosen host takes the instance's
// lease, restores, and activates it.
type RestoreFailover struct {
	// Instance is the instance to fail over.
	Instance string `json:"instance" jsonschema:"required,minLength=1"`
	// To is the host to fail over to; empty means the instance's standby.
	To string `json:"to,omitempty"`
	// Drill restores into a scratch place, measures RPO and RTO, switches
	// no DNS, and cleans up.
	Drill bool `json:"drill,omitempty"`
	// Reason says who asked and why, for the record.
	Reason string `json:"reason,omitempty"`
}

// JobTrackerConfirmDead asks job-tracker to bury lost jobs: one job, or
// every lost job on a host. Exactly one of Job and Host is given.
type JobTrackerConfirmDead struct {
	// Job is the lost job to bury.
	Job string `json:"job,omitempty" jsonschema:"oneof_required=job,minLength=1"`
	// Host buries every lost job on this host.
	Host string `json:"host,omitempty" jsonschema:"oneof_required=host,minLength=1"`
}

// JobTrackerKick asks job-tracker to make a buried job ready to run again.
type JobTrackerKick struct {
	// Job is the buried job to kick.
	Job string `json:"job" jsonschema:"required,minLength=1"`
}

// DNSSet asks dns-updater to point a name it owns at an address by hand
// (lifeboat dns set); it answers with DNSRecordUpdated or DNSUpdateFailed.
type DNSSet struct {
	// Name is the fully qualified name to set, e.g. wr.example.com.
	Name string `json:"name" jsonschema:"required,minLength=1"`
	// Address is the IPv4 or IPv6 address the name should answer.
	Address string `json:"address" jsonschema:"required,minLength=1"`
	// TTL is the record's time to live in seconds; 0 keeps the configured
	// one.
	TTL uint32 `json:"ttl,omitempty" jsonschema:"minimum=0,maximum=2147483647"`
	// Reason says who asked and why, for the record.
	Reason string `json:"reason,omitempty"`
}
