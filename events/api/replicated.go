package api

import "time"

// Endpoints the runtime serves for every service on every host, each at
// the host-scoped subject lifeboat.api.<service>.<host>.<endpoint>
// (events.HostAPISubject): they are questions for one host's process.
const (
	// DigestEndpoint takes nothing and answers Digest: a hash of the service's
	// replicated state, equal on every host that applied the same events.
	DigestEndpoint = "digest"
	// SnapshotEndpoint takes nothing and answers SnapshotReply: the replicated
	// state, written to the object store for a host that must rebuild.
	SnapshotEndpoint = "snapshot"
	// HostInfoEndpoint is lifeboat up's own host-scoped endpoint,
	// lifeboat.api.host.<host>.info: it takes nothing and answers HostInfo.
	HostInfoEndpoint = "info"
)

// HostEndpoints are the host-scoped endpoints every service serves on
// every host.
var HostEndpoints = []string{Status, DigestEndpoint, SnapshotEndpoint}

// HostService is the name host-scoped questions for a lifeboat process
// itself (not one of its services) are asked under.
const HostService = "host"

// Digest is a service's replicated state on one host, hashed.
type Digest struct {
	Service string `json:"service"`
	Host    string `json:"host"`
	// Applied is the LIFEBOAT_EVENTS sequence the state stands at.
	Applied uint64 `json:"applied"`
	// SHA256 is the hash of every replicated table's rows, in a canonical
	// order and encoding.
	SHA256 string `json:"sha256"`
	// Tables is each replicated table's row count and hash, to find which
	// one differs.
	Tables []TableDigest `json:"tables"`
}

// TableDigest is one replicated table's row count and hash.
type TableDigest struct {
	Name   string `json:"name"`
	Rows   int    `json:"rows"`
	SHA256 string `json:"sha256"`
}

// SnapshotReply says where a host's snapshot of its replicated state is.
type SnapshotReply struct {
	// Bucket and Object name the snapshot in the JetStream object store.
	Bucket string `json:"bucket"`
	Object string `json:"object"`
	// Applied is the LIFEBOAT_EVENTS sequence the snapshot stands at.
	Applied uint64 `json:"applied"`
	// SHA256 is the snapshot's digest (as Digest gives it).
	SHA256 string `json:"sha256"`
}

// LeaderStatus is a service's leader as one host sees it.
type LeaderStatus struct {
	// Host holds the service's leader lease; empty when nobody does.
	Host string `json:"host"`
	// Epoch of the holder's tenure.
	Epoch uint64 `json:"epoch"`
	// Self says whether the answering host is the leader.
	Self bool `json:"self"`
	// ReconciledAt is when the answering host, while leading, last
	// finished a reconcile without error.
	ReconciledAt *time.Time `json:"reconciled_at,omitempty"`
}
