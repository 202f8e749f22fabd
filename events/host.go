package events

import "time"

// HostHeartbeat is published by every lifeboat process every heartbeat
// interval on lifeboat.heartbeat.<host>, over core NATS and on no stream (a
// missed heartbeat is information, a replayed one is not). volume-monitor
// turns a host's silence into HostDown and its return into HostUp.
type HostHeartbeat struct {
	// Host is the sender's host identity (--host, default the hostname).
	Host string `json:"host" jsonschema:"required,minLength=1"`
	// Address is where the host's lifeboat process answers (its --http
	// address), used by the status page and by job-tracker's pid checks.
	Address string `json:"address,omitempty"`
	// Services lists the services the sending process runs.
	Services []string `json:"services,omitempty"`
	// SentAt is when the heartbeat was sent, by the sender's clock.
	SentAt time.Time `json:"sent_at" jsonschema:"required"`
	// Interval is the sender's heartbeat interval, so the monitor can judge
	// each host by its own rhythm.
	Interval Millis `json:"interval_ms,omitempty" jsonschema:"minimum=0"`
	// ConfigHash is the hex SHA-256 of the lifeboat.yaml the sender runs
	// with, empty when it runs without one: every host reads the same
	// file, so a host whose hash differs from the others' is flagged
	// (`lifeboat status`).
	ConfigHash string `json:"config_hash,omitempty"`
}

// HostDown says a host is considered dead. volume-monitor emits it when a
// host has been silent for host_down_after; any outside system may publish
// it too (a bare {"host":"h1"} is enough). restore fails over the instances
// active on the host when they say failover: auto; job-tracker marks the
// host's jobs lost.
type HostDown struct {
	// Host is the host that is down.
	Host string `json:"host" jsonschema:"required,minLength=1"`
	// LastSeen is when the host was last heard from: the failure time from
	// which a failover's RPO is measured. Absent when unknown.
	LastSeen time.Time `json:"last_seen,omitzero"`
	// Reason says why the host is judged down, e.g. "no heartbeat for 15s".
	Reason string `json:"reason,omitempty"`
	// DetectedBy names who decided, e.g. "volume-monitor@hot-2" or an
	// outside monitoring system.
	DetectedBy string `json:"detected_by,omitempty"`
}

// HostUp says a host that was down is alive again. volume-monitor emits it
// when a down host heartbeats again; any outside system may publish it. sync
// kicks the targets on the host.
type HostUp struct {
	// Host is the host that is back.
	Host string `json:"host" jsonschema:"required,minLength=1"`
	// LastSeen is when the host was heard from, i.e. the heartbeat that
	// brought it back. Absent when unknown.
	LastSeen time.Time `json:"last_seen,omitzero"`
	// Reason says why the host is judged up, e.g. "heartbeat resumed".
	Reason string `json:"reason,omitempty"`
	// DetectedBy names who decided.
	DetectedBy string `json:"detected_by,omitempty"`
}
