package events

import "time"

// SyncCompleted says a backup has been shipped to a target and verified
// there (sizes and SHA-256 against the manifest). sync emits it; restore
// counts the copy as a restore point on the target's host.
type SyncCompleted struct {
	// Target is the sync target that received the backup.
	Target string `json:"target" jsonschema:"required,minLength=1"`
	// Plan is the backup plan the backup belongs to.
	Plan string `json:"plan,omitempty"`
	// Instance is the plan's instance.
	Instance string `json:"instance,omitempty"`
	// Backup is the backup's directory name.
	Backup string `json:"backup" jsonschema:"required,minLength=1"`
	// Host is the host the target is on, where empty means the target is
	// not host-bound (an S3 bucket).
	Host string `json:"host,omitempty"`
	// BytesSent is how many bytes crossed the wire: only the chunks the
	// target lacked.
	BytesSent int64 `json:"bytes_sent" jsonschema:"minimum=0"`
	// BytesTotal is the backup's full size.
	BytesTotal int64 `json:"bytes_total" jsonschema:"minimum=0"`
	// ChunksSent is how many content-defined chunks were sent.
	ChunksSent int64 `json:"chunks_sent,omitempty" jsonschema:"minimum=0"`
	// ChunksTotal is how many chunks the backup has.
	ChunksTotal int64 `json:"chunks_total,omitempty" jsonschema:"minimum=0"`
	// Lag is the time from the backup's taken_at to its verification at
	// the target: how far behind the target was.
	Lag Millis `json:"lag_ms,omitempty" jsonschema:"minimum=0"`
	// Duration is how long the transfer and verification took.
	Duration Millis `json:"duration_ms,omitempty" jsonschema:"minimum=0"`
	// CompletedAt is when the copy verified.
	CompletedAt time.Time `json:"completed_at,omitzero"`
}

// SyncFailed says a transfer to a target failed; sync backs off and retries
// (sync.kick retries at once). sync emits it.
type SyncFailed struct {
	// Target is the sync target the transfer was for.
	Target string `json:"target" jsonschema:"required,minLength=1"`
	// Plan is the backup plan the backup belongs to.
	Plan string `json:"plan,omitempty"`
	// Instance is the plan's instance.
	Instance string `json:"instance,omitempty"`
	// Backup is the backup being sent.
	Backup string `json:"backup,omitempty"`
	// Host is the host the target is on.
	Host string `json:"host,omitempty"`
	// Error says what went wrong and what to do about it.
	Error string `json:"error" jsonschema:"required,minLength=1"`
	// BytesSent is how many bytes were sent before the failure.
	BytesSent int64 `json:"bytes_sent,omitempty" jsonschema:"minimum=0"`
	// BytesTotal is the backup's full size.
	BytesTotal int64 `json:"bytes_total,omitempty" jsonschema:"minimum=0"`
	// Attempt counts the attempts at this transfer, from 1.
	Attempt int `json:"attempt,omitempty" jsonschema:"minimum=0"`
	// RetryIn is how long until the next attempt.
	RetryIn Millis `json:"retry_in_ms,omitempty" jsonschema:"minimum=0"`
	// FailedAt is when it failed.
	FailedAt time.Time `json:"failed_at,omitzero"`
}

// SyncStalled says a target has not advanced within its stall timeout
// (walb's wdiff send error); it shows in lifeboat sync status and
// lifeboat volume status until the target advances. sync emits it.
type SyncStalled struct {
	// Target is the stalled sync target.
	Target string `json:"target" jsonschema:"required,minLength=1"`
	// Plan is the backup plan the target serves.
	Plan string `json:"plan,omitempty"`
	// Instance is the plan's instance.
	Instance string `json:"instance,omitempty"`
	// Backup is the backup the target is stuck on, if any.
	Backup string `json:"backup,omitempty"`
	// Host is the host the target is on.
	Host string `json:"host,omitempty"`
	// Lag is how long the target has gone without advancing.
	Lag Millis `json:"lag_ms,omitempty" jsonschema:"minimum=0"`
	// StallTimeout is the target's configured stall timeout.
	StallTimeout Millis `json:"stall_timeout_ms,omitempty" jsonschema:"minimum=0"`
	// LastProgressAt is when the target last advanced.
	LastProgressAt time.Time `json:"last_progress_at,omitzero"`
	// Error is the last transfer error, if there was one.
	Error string `json:"error,omitempty"`
	// BytesSent is how much of the stuck backup has been sent.
	BytesSent int64 `json:"bytes_sent,omitempty" jsonschema:"minimum=0"`
	// BytesTotal is the stuck backup's full size.
	BytesTotal int64 `json:"bytes_total,omitempty" jsonschema:"minimum=0"`
}
