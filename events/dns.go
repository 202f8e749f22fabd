package events

import "time"

// DNSRecordUpdated says an instance's DNS name now points at a new address
// and the zone's authoritative servers answer it. dns-updater emits it after
// an InstanceActivated or a dns-updater.set (then carrying the command's id
// as request_id).
type DNSRecordUpdated struct {
	// Name is the fully qualified name changed, e.g. wr.example.com.
	Name string `json:"name" jsonschema:"required,minLength=1"`
	// Type is the record type: A, AAAA or CNAME.
	Type string `json:"type" jsonschema:"required,minLength=1"`
	// Old is the value the name had before; empty when it had none.
	Old string `json:"old,omitempty"`
	// New is the value the name has now.
	New string `json:"new" jsonschema:"required,minLength=1"`
	// TTL is the record's time to live in seconds, as DNS counts it.
	TTL uint32 `json:"ttl,omitempty" jsonschema:"minimum=0,maximum=2147483647"`
	// Provider is the DNS provider that made the change: embedded, rfc2136
	// or infoblox.
	Provider string `json:"provider,omitempty"`
	// Instance is the instance whose name it is, when the change follows a
	// failover.
	Instance string `json:"instance,omitempty"`
	// Epoch is the InstanceActivated epoch applied; 0 for a change made by
	// hand (dns-updater.set).
	Epoch uint64 `json:"epoch,omitempty" jsonschema:"minimum=0"`
	// VerifiedAfter is how long after the change the authoritative servers
	// first answered the new value.
	VerifiedAfter Millis `json:"verified_after_ms,omitempty" jsonschema:"minimum=0"`
	// UpdatedAt is when the change was verified.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// RequestID is the id of the dns-updater.set command this change
	// answers; empty for a change that follows a failover.
	RequestID string `json:"request_id,omitempty"`
}

// DNSUpdateFailed says dns-updater could not change a name, or could not
// verify the change, after its retries, or refused it. dns-updater emits
// it; in answer to a dns-updater.set it carries the command's id as
// request_id.
type DNSUpdateFailed struct {
	// Name is the fully qualified name that was to change.
	Name string `json:"name" jsonschema:"required,minLength=1"`
	// Type is the record type: A, AAAA or CNAME.
	Type string `json:"type,omitempty"`
	// New is the value the name was to get.
	New string `json:"new,omitempty"`
	// Provider is the DNS provider that refused or failed.
	Provider string `json:"provider,omitempty"`
	// Instance is the instance whose name it is.
	Instance string `json:"instance,omitempty"`
	// Epoch is the InstanceActivated epoch that asked for the change.
	Epoch uint64 `json:"epoch,omitempty" jsonschema:"minimum=0"`
	// Error says what went wrong and what to do about it.
	Error string `json:"error" jsonschema:"required,minLength=1"`
	// Rcode is the DNS response code when the server answered one, e.g.
	// REFUSED, NOTAUTH, BADSIG.
	Rcode string `json:"rcode,omitempty"`
	// Reason is the failure in one word, for alerts and dashboards: the
	// Rcode when there is one, else NOT_OWNED, OUTSIDE_ZONE, INVALID,
	// NOT_VERIFIED, unreachable, timeout, or the provider's own (HTTP 401).
	Reason string `json:"reason,omitempty"`
	// Attempts is how many times the update was tried.
	Attempts int `json:"attempts,omitempty" jsonschema:"minimum=0"`
	// FailedAt is when dns-updater gave up.
	FailedAt time.Time `json:"failed_at,omitzero"`
	// RequestID is the id of the dns-updater.set command this failure
	// answers; empty for a change that follows a failover.
	RequestID string `json:"request_id,omitempty"`
}
