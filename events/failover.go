package events

import "time"

// FailoverStarted says the restore service on the standby has begun to fail
// an instance over, on lifeboat failover or on HostDown of the instance's
// active host. restore emits it.
type FailoverStarted struct {
	// Instance is the instance failing over.
	Instance string `json:"instance" jsonschema:"required,minLength=1"`
	// From is the host the instance was active on.
	From string `json:"from,omitempty"`
	// To is the host taking over.
	To string `json:"to" jsonschema:"required,minLength=1"`
	// Reason says what started it, e.g. "host hot-1 down" or "operator".
	Reason string `json:"reason,omitempty"`
	// Epoch is the instance's lease revision taken for the failover, when
	// already held.
	Epoch uint64 `json:"epoch,omitempty" jsonschema:"minimum=0"`
	// Drill is true for a drill: restored into a scratch place, no DNS
	// switched.
	Drill bool `json:"drill,omitempty"`
	// StartedAt is when the failover started.
	StartedAt time.Time `json:"started_at,omitzero"`
}

// InstanceActivated says an instance is running on a new host, restored and
// healthy, under the lease revision Epoch. restore emits it (never for a
// drill); dns-updater points the instance's name at Address, ignoring any
// activation whose epoch is not newer than the last it applied.
type InstanceActivated struct {
	// Instance is the activated instance.
	Instance string `json:"instance" jsonschema:"required,minLength=1"`
	// From is the host the instance was active on before.
	From string `json:"from,omitempty"`
	// To is the host now active.
	To string `json:"to" jsonschema:"required,minLength=1"`
	// Address is the IP address clients should now use.
	Address string `json:"address" jsonschema:"required,minLength=1"`
	// Epoch is the instance's lease revision (the fencing epoch); a larger
	// epoch is a later activation.
	Epoch uint64 `json:"epoch" jsonschema:"required,minimum=1"`
	// Backup is the backup the instance was restored from.
	Backup string `json:"backup,omitempty"`
	// Drill is true for a drill; consumers that change the world ignore it.
	Drill bool `json:"drill,omitempty"`
	// ActivatedAt is when the instance passed its health hook.
	ActivatedAt time.Time `json:"activated_at,omitzero"`
}

// FailoverCompleted says a failover has finished, with what it cost: the
// RPO (the failure time minus the restored backup's consistent_at) and the
// RTO (from the failure to the instance answering). restore emits it.
type FailoverCompleted struct {
	// Instance is the instance that failed over.
	Instance string `json:"instance" jsonschema:"required,minLength=1"`
	// From is the host the instance was active on.
	From string `json:"from,omitempty"`
	// To is the host now active.
	To string `json:"to" jsonschema:"required,minLength=1"`
	// Address is the IP address clients should now use.
	Address string `json:"address,omitempty"`
	// Epoch is the lease revision the instance runs under.
	Epoch uint64 `json:"epoch,omitempty" jsonschema:"minimum=0"`
	// Backup is the backup the instance was restored from.
	Backup string `json:"backup,omitempty"`
	// FailedAt is the failure time the RPO and RTO are measured from.
	FailedAt time.Time `json:"failed_at,omitzero"`
	// ConsistentAt is the restored backup's consistent_at.
	ConsistentAt time.Time `json:"consistent_at,omitzero"`
	// RPO is the data lost, in time: FailedAt minus ConsistentAt (it can
	// come out negative when the hosts' clocks disagree).
	RPO Millis `json:"rpo_ms,omitempty"`
	// RTO is the time from FailedAt to the instance answering.
	RTO Millis `json:"rto_ms,omitempty" jsonschema:"minimum=0"`
	// Drill is true for a drill.
	Drill bool `json:"drill,omitempty"`
	// CompletedAt is when the failover finished.
	CompletedAt time.Time `json:"completed_at,omitzero"`
}
