// Package api is the contract of lifeboat's request/reply endpoints: the
// name of every endpoint and the Go type of every request and reply, at
// lifeboat.api.<service>.<endpoint> (events.APISubject). Services answer
// with these types and the CLI and the tests ask with them, so that no
// client needs a service's code to speak to it (DESIGN §1: only `lifeboat
// up` links service code).
//
// The package depends on the standard library and lifeboat.dev/events
// only; a test enforces it. A request's empty body is its zero value. An
// endpoint that fails answers with the micro error headers: the message
// says what was wrong and what to do, the code is one of the Code
// constants. Types change the way events do: add fields, never change
// their meaning.
package api

import (
	"time"

	"lifeboat.dev/events"
)

// Status is the endpoint every service answers: it takes nothing and
// answers ServiceStatus.
const Status = "status"

// Codes of an endpoint's error answer (micro's Nats-Service-Error-Code
// header).
const (
	// CodeBadRequest: the request is wrong in itself (a bad name or
	// value); the same request fails the same way.
	CodeBadRequest = "400"
	// CodeNotFound: what the request names does not exist.
	CodeNotFound = "404"
	// CodeConflict: the request contradicts the current state.
	CodeConflict = "409"
	// CodeInternal: the service failed (its database, its disk).
	CodeInternal = "500"
)

// Endpoints lists each service's endpoints besides Status, by service
// name (events.Service*). Treat it as read-only.
var Endpoints = map[string][]string{
	events.ServiceBackupScheduler: {PlanList, PlanShow, PlanSet, PlanDisable, PlanEnable, BackupList, BackupVerify, CatalogRebuild},
	events.ServiceDNSUpdater:      {DNSRecords, DNSHistory},
	events.ServiceVolumeMonitor:   {Hosts},
}

// ServiceStatus is the reply of every service's status endpoint.
type ServiceStatus struct {
	Service       string           `json:"service"`
	Host          string           `json:"host"`
	Version       string           `json:"version"`
	StartedAt     time.Time        `json:"started_at"`
	UptimeSeconds float64          `json:"uptime_seconds"`
	Database      string           `json:"database"`
	Handled       int64            `json:"handled"`
	OutboxPending int64            `json:"outbox_pending"`
	DeadLettered  int64            `json:"dead_lettered"`
	Consumers     []ConsumerStatus `json:"consumers"`
	// Applied is the sequence of the last LIFEBOAT_EVENTS message this
	// host's database applied (DESIGN §1): equal on every host, and equal
	// to the stream's last once every event is applied.
	Applied uint64 `json:"applied"`
	// Rebuilt says when and from which peer the replicated state was last
	// rebuilt, or what was lost when no peer could give it.
	Rebuilt string `json:"rebuilt,omitempty"`
	// Leader is the service's leader and its epoch, for a service that
	// has one.
	Leader *LeaderStatus `json:"leader,omitempty"`
	// Details are the service's own facts: BackupSchedulerStatus,
	// DNSStatus, VolumeMonitorStatus. Decode them by embedding
	// ServiceStatus in a struct with a typed Details field.
	Details any `json:"details,omitempty"`
}

// ConsumerStatus is one durable consumer as JetStream sees it.
type ConsumerStatus struct {
	Subject     string `json:"subject"`
	Durable     string `json:"durable"`
	Pending     uint64 `json:"pending"`
	AckPending  int    `json:"ack_pending"`
	Redelivered int    `json:"redelivered"`
}
