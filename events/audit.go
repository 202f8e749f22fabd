package events

import "time"

// CommandAudited records an operator's command (or a request that changes
// state, such as a plan set) as the service that received it judged it:
// who signed it, when, and whether it was carried out. Within one NATS
// account the server does not stamp who sent a message, so the proof is
// the operator's NKey signature, checked against the cluster's operator
// keys (package lifeboat.dev/pkg/auth); a cluster started with --auth
// refuses a command without one. `lifeboat events tail --type
// CommandAudited` shows the trail.
type CommandAudited struct {
	// Subject is the command's or request's subject, e.g.
	// lifeboat.cmd.dns-updater.set.
	Subject string `json:"subject" jsonschema:"required,minLength=1"`
	// ID is the command's id (its Nats-Msg-Id) or the request's.
	ID string `json:"id,omitempty"`
	// Service and Host received it.
	Service string `json:"service" jsonschema:"required,minLength=1"`
	Host    string `json:"host,omitempty"`
	// Operator names the operator whose key signed it (cluster.json);
	// empty when unsigned or signed by a key the cluster does not know.
	Operator string `json:"operator,omitempty"`
	// Key is the public NKey that signed it, when it was signed.
	Key string `json:"key,omitempty"`
	// SignedAt is when the operator signed it, by the operator's clock.
	SignedAt time.Time `json:"signed_at,omitzero"`
	// ReceivedAt is when the stream took it (a command) or the service
	// received it (a request).
	ReceivedAt time.Time `json:"received_at,omitzero"`
	// Accepted says whether the service acted on it; Reason says why not.
	Accepted bool   `json:"accepted"`
	Reason   string `json:"reason,omitempty"`
}
