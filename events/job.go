package events

import "time"

// JobStarted says a runner (lifeboat run) started a job's command. The
// runner emits it; job-tracker records the job as running.
type JobStarted struct {
	// Job is the job's id, chosen by the runner.
	Job string `json:"job" jsonschema:"required,minLength=1"`
	// Host is the host the job runs on.
	Host string `json:"host" jsonschema:"required,minLength=1"`
	// PID is the command's process id on Host.
	PID int `json:"pid,omitempty" jsonschema:"minimum=0"`
	// Command is the command line, program first.
	Command []string `json:"command,omitempty"`
	// Retries is how many times the job may be retried after a failure.
	Retries int `json:"retries,omitempty" jsonschema:"minimum=0"`
	// Token is the client token runners authenticate with; job-tracker
	// refuses (dead-letters) a report without a valid one.
	Token string `json:"token,omitempty"`
	// StartedAt is when the command started.
	StartedAt time.Time `json:"started_at,omitzero"`
}

// JobHeartbeat says a job's command is still running. The runner emits it
// every heartbeat interval; job-tracker marks a job lost when they stop for
// heartbeat_timeout, and may ask to kill a job it does not know.
type JobHeartbeat struct {
	// Job is the job's id.
	Job string `json:"job" jsonschema:"required,minLength=1"`
	// Host is the host the job runs on.
	Host string `json:"host" jsonschema:"required,minLength=1"`
	// PID is the command's process id on Host.
	PID int `json:"pid,omitempty" jsonschema:"minimum=0"`
	// Token is the client token runners authenticate with.
	Token string `json:"token,omitempty"`
	// SentAt is when the heartbeat was sent.
	SentAt time.Time `json:"sent_at,omitzero"`
}

// JobExited says a job's command has ended. The runner emits it, and keeps
// retrying the report until it is acknowledged; job-tracker marks the job
// complete, or buries or retries it on failure.
type JobExited struct {
	// Job is the job's id.
	Job string `json:"job" jsonschema:"required,minLength=1"`
	// Host is the host the job ran on.
	Host string `json:"host" jsonschema:"required,minLength=1"`
	// PID is the command's process id on Host.
	PID int `json:"pid,omitempty" jsonschema:"minimum=0"`
	// ExitCode is the command's exit status; -1 when it was killed by a
	// signal or never started.
	ExitCode int `json:"exit_code" jsonschema:"required"`
	// Signal names the signal that killed the command, e.g. KILL.
	Signal string `json:"signal,omitempty"`
	// Error says why the command could not be started or waited for.
	Error string `json:"error,omitempty"`
	// Duration is how long the command ran.
	Duration Millis `json:"duration_ms,omitempty" jsonschema:"minimum=0"`
	// Token is the client token runners authenticate with.
	Token string `json:"token,omitempty"`
	// ExitedAt is when the command ended.
	ExitedAt time.Time `json:"exited_at,omitzero"`
}

// JobLost says job-tracker lost contact with a running job: its heartbeats
// stopped for heartbeat_timeout, or its host was reported down.
type JobLost struct {
	// Job is the job's id.
	Job string `json:"job" jsonschema:"required,minLength=1"`
	// Host is the host the job was running on.
	Host string `json:"host,omitempty"`
	// Reason says why the job counts as lost.
	Reason string `json:"reason,omitempty"`
	// LastSeen is when the job was last heard from.
	LastSeen time.Time `json:"last_seen,omitzero"`
}

// JobBuried says job-tracker gave a job up: confirmed dead
// (job-tracker.confirm-dead), or failed with no retries left. A buried job
// runs again only when kicked (job-tracker.kick).
type JobBuried struct {
	// Job is the job's id.
	Job string `json:"job" jsonschema:"required,minLength=1"`
	// Host is the host the job last ran on.
	Host string `json:"host,omitempty"`
	// Reason says why the job was buried.
	Reason string `json:"reason,omitempty"`
}

// JobRetried says job-tracker made a job ready to run again: it failed with
// retries left, its process was found gone, or it was kicked.
type JobRetried struct {
	// Job is the job's id.
	Job string `json:"job" jsonschema:"required,minLength=1"`
	// Host is the host the job last ran on.
	Host string `json:"host,omitempty"`
	// Reason says why the job is retried.
	Reason string `json:"reason,omitempty"`
	// RetriesLeft is how many retries remain after this one.
	RetriesLeft int `json:"retries_left,omitempty" jsonschema:"minimum=0"`
}

// JobKillRequested asks the runner of a job to kill it: job-tracker emits it
// for heartbeats of jobs its (restored) state does not know, when
// unknown_jobs is kill (Aurora's behaviour). Runners on Host act on it.
type JobKillRequested struct {
	// Job is the job's id.
	Job string `json:"job" jsonschema:"required,minLength=1"`
	// Host is the host the job runs on; its runner does the killing.
	Host string `json:"host" jsonschema:"required,minLength=1"`
	// PID is the process to kill, as the job's heartbeat reported it.
	PID int `json:"pid,omitempty" jsonschema:"minimum=0"`
	// Reason says why the kill is requested.
	Reason string `json:"reason,omitempty"`
}
