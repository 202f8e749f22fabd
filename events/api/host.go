package api

import (
	"time"

	"lifeboat.dev/events"
)

// HostInfo is the reply of a lifeboat process's own host-scoped endpoint,
// lifeboat.api.host.<host>.info (HostService, HostInfoEndpoint): the
// process, its data directory and its NATS node, as that host sees them.
type HostInfo struct {
	Host          string    `json:"host"`
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	// Now is the host's clock when it answered: status compares it with
	// its own to show the skew.
	Now time.Time `json:"now"`
	// Services are the services the process runs (--target).
	Services []string `json:"services"`
	// DataDir is the process's data directory.
	DataDir string `json:"data_dir"`
	// DataFreeBytes is what the data directory's file system has free for
	// the process (not counting blocks reserved for root); DataFreeError
	// says why it is unknown, when it is.
	DataFreeBytes uint64 `json:"data_free_bytes"`
	DataFreeError string `json:"data_free_error,omitempty"`
	// ConfigHash is the hex SHA-256 of the lifeboat.yaml the process runs
	// with, empty without one: the same as its heartbeats carry.
	ConfigHash string `json:"config_hash,omitempty"`
	// HeartbeatInterval is how often the host heartbeats.
	HeartbeatInterval events.Millis `json:"heartbeat_interval_ms,omitempty"`
	// Skew is, per host this one hears heartbeats from, how far that
	// host's clock is ahead of this one's (a heartbeat's send time minus
	// its receipt time, the largest over the last minutes: delay only
	// lowers it), in milliseconds; SkewError says when one exceeds the
	// lease margin.
	Skew      map[string]int64 `json:"skew_ms,omitempty"`
	SkewError string           `json:"skew_error,omitempty"`
	// Instances are the leases of the instances that list this host: who
	// holds each and in which epoch, as this host sees them.
	Instances []InstanceLease `json:"instances,omitempty"`
	// Node is the process's embedded NATS node; nil when the process uses
	// an external NATS cluster (External).
	Node *NodeInfo `json:"node,omitempty"`
	// External is the external NATS server the process is connected to
	// (its URL, credentials redacted), when it runs with --nats.
	External string `json:"external_nats,omitempty"`
}

// NodeInfo is an embedded NATS node and the JetStream meta group as that
// node sees them.
type NodeInfo struct {
	// Name is the node's server name (the host's name).
	Name string `json:"name"`
	// Cluster is the NATS cluster's name, empty for a single node.
	Cluster string `json:"cluster,omitempty"`
	// Routes are the names of the nodes this one has routes to.
	Routes []string `json:"routes"`
	// MetaLeader is the node leading the JetStream meta group, empty
	// while there is none (no quorum, or an election).
	MetaLeader string `json:"meta_leader,omitempty"`
	// MetaCurrent says whether this node's view of the meta group is
	// current (it leads it, or heard from the leader lately).
	MetaCurrent bool `json:"meta_current"`
	// MetaPeers is how many nodes the meta group has; Reachable how many
	// of them this node reaches (itself included). A majority must be
	// reachable for JetStream to work.
	MetaPeers int `json:"meta_peers"`
	Reachable int `json:"reachable"`
}

// InstanceLease is an instance's lease as one host sees it.
type InstanceLease struct {
	Instance string `json:"instance"`
	// Holder is the active host, empty when nobody holds the lease.
	Holder string `json:"holder"`
	Epoch  uint64 `json:"epoch,omitempty"`
	// Declined counts the times this host declined to take the free lease
	// because its store does not carry the highest epoch taken.
	Declined int `json:"declined,omitempty"`
}
