package api

import "time"

// dns-updater's endpoints (events.ServiceDNSUpdater). They are read-only:
// changing a name by hand is the dns-updater.set command (events.DNSSet),
// answered by DNSRecordUpdated or DNSUpdateFailed carrying its id as
// request_id.
const (
	// DNSRecords takes DNSRecordsRequest and answers DNSRecordsReply.
	DNSRecords = "records"
	// DNSHistory takes DNSHistoryRequest and answers DNSHistoryReply.
	DNSHistory = "history"
)

// DNSRecordsRequest asks for the records of one name, or (Name empty) of
// the zone.
type DNSRecordsRequest struct {
	Name string `json:"name,omitempty"`
}

// DNSRecord is one record as the records endpoint shows it.
type DNSRecord struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
	TTL   uint32 `json:"ttl"`
	// Instance is the instance the name is declared for; empty for a
	// record lifeboat does not own (it never changes those).
	Instance string `json:"instance,omitempty"`
}

// DNSRecordsReply is the records endpoint's answer. The embedded provider
// shows every record of the zone but the SOA; the others show the names
// lifeboat owns (or the one asked for), as their servers answer them now.
type DNSRecordsReply struct {
	Zone     string      `json:"zone"`
	Provider string      `json:"provider"`
	Serial   uint32      `json:"serial,omitempty"`
	Records  []DNSRecord `json:"records"`
	// Errors are the names that could not be read, and why.
	Errors []string `json:"errors,omitempty"`
}

// DNSHistoryRequest asks for the newest changes, of one name or of all
// (Name empty), at most Limit (default 100, at most 100000).
type DNSHistoryRequest struct {
	Name  string `json:"name,omitempty"`
	Limit int    `json:"limit,omitempty"`
}

// DNSChange is one change in the history.
type DNSChange struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
	// Old and New are the values before and after, comma separated.
	Old      string `json:"old"`
	New      string `json:"new"`
	TTL      uint32 `json:"ttl"`
	Provider string `json:"provider"`
	// Kind is activate (a failover), set (by hand) or ttl (lowered or
	// restored around a planned failover).
	Kind     string    `json:"kind,omitempty"`
	Instance string    `json:"instance,omitempty"`
	Epoch    int64     `json:"epoch,omitempty"`
	At       time.Time `json:"at"`
	// Verified says whether the authoritative servers answered the new
	// value; VerifiedAfterMs is how long that took.
	Verified        bool  `json:"verified"`
	VerifiedAfterMs int64 `json:"verified_after_ms,omitempty"`
}

// DNSHistoryReply is the history endpoint's answer, newest first.
type DNSHistoryReply struct {
	Changes []DNSChange `json:"changes"`
}

// DNSStatus is dns-updater's part of its status reply
// (ServiceStatus.Details).
type DNSStatus struct {
	// Zone is the zone changed; empty when none is configured.
	Zone string `json:"zone"`
	// Provider is embedded, rfc2136 or infoblox.
	Provider string `json:"provider,omitempty"`
	// Listen is the embedded server's address.
	Listen string `json:"listen,omitempty"`
	// Authoritative are the servers changes are verified against.
	Authoritative []string `json:"authoritative,omitempty"`
	// Serial is the zone's SOA serial as its first authoritative server
	// answers it (0 when it could not be asked).
	Serial      uint32 `json:"serial,omitempty"`
	SerialError string `json:"serial_error,omitempty"`
	// Instances maps each instance to its DNS name.
	Instances map[string]string `json:"instances,omitempty"`
	// Pending is how many changes wait to be applied.
	Pending int `json:"pending"`
	// Lowered lists the instances whose TTL is lowered for a failover.
	Lowered []string `json:"lowered,omitempty"`
	// LastChange is the newest change in the history.
	LastChange *DNSChange `json:"last_change,omitempty"`
}
