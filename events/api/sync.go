package api

import (
	"time"

	"lifeboat.dev/events"
)

// The endpoints a receiving host's sync service answers for a sending
// host, host-scoped (pkg/target/remote speaks them).
const (
	SyncTargetList    = "target-list"
	SyncTargetMissing = "target-missing"
	SyncTargetPut     = "target-put"
	SyncTargetRecipe  = "target-recipe"
	SyncTargetCommit  = "target-commit"
	SyncTargetPrune   = "target-prune"
)

// ServiceHostEndpoints are the host-scoped endpoints a service serves
// besides HostEndpoints, by service name. Treat it as read-only.
var ServiceHostEndpoints = map[string][]string{
	events.ServiceSync: {SyncTargetList, SyncTargetMissing, SyncTargetPut, SyncTargetRecipe, SyncTargetCommit, SyncTargetPrune},
}

// SyncStatus is sync's part of its status reply (ServiceStatus.Details):
// the targets this host ships to.
type SyncStatus struct {
	Targets []SyncTarget `json:"targets"`
	// StallTimeout is how long a target with work may go without
	// advancing before it is reported stalled.
	StallTimeout int64 `json:"stall_timeout_ms"`
}

// SyncTarget is one target as the sending host sees it.
type SyncTarget struct {
	// Target is the target's name; a host's dir target (an instance's
	// standby) is named by its host.
	Target string `json:"target"`
	// Host is the host the target is on.
	Host string `json:"host"`
	// From is the sending host.
	From string `json:"from"`
	// LastPlan and LastBackup are the last backup verified at the target.
	LastPlan   string     `json:"last_plan,omitempty"`
	LastBackup string     `json:"last_backup,omitempty"`
	LastSynced *time.Time `json:"last_synced,omitempty"`
	// Lag is the last backup's consistent_at to its verification there.
	Lag int64 `json:"lag_ms"`
	// Backlog counts the backups waiting, BacklogBytes their size, and
	// Oldest names the first of them.
	Backlog      int64  `json:"backlog"`
	BacklogBytes int64  `json:"backlog_bytes"`
	Oldest       string `json:"oldest,omitempty"`
	// Sending is the backup in transfer and how far it got.
	Sending    string `json:"sending,omitempty"`
	BytesSent  int64  `json:"bytes_sent,omitempty"`
	BytesTotal int64  `json:"bytes_total,omitempty"`
	// LastProgress is when the target last advanced.
	LastProgress *time.Time `json:"last_progress,omitempty"`
	// LastError is the last transfer's error, until one succeeds.
	LastError string `json:"last_error,omitempty"`
	// SendError says the target is stalled (walb's is_wdiff_send_error):
	// it has work and has not advanced within the stall timeout.
	SendError bool `json:"send_error"`
}
