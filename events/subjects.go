package events

import "strings"

// Streams and the subjects they hold (DESIGN §2).
const (
	// StreamEvents holds every event: limits retention, file storage,
	// duplicate window 2m.
	StreamEvents = "LIFEBOAT_EVENTS"
	// StreamCommands holds every command: work-queue retention.
	StreamCommands = "LIFEBOAT_COMMANDS"
	// StreamDLQ holds dead letters, kept for inspection
	// (lifeboat events dlq).
	StreamDLQ = "LIFEBOAT_DLQ"

	// SubjectEvents is StreamEvents' subject filter.
	SubjectEvents = "lifeboat.event.>"
	// SubjectCommands is StreamCommands' subject filter.
	SubjectCommands = "lifeboat.cmd.>"
	// SubjectDLQ is StreamDLQ's subject filter.
	SubjectDLQ = "lifeboat.dlq.>"
	// SubjectHeartbeats matches every host's heartbeat (core NATS, on no
	// stream).
	SubjectHeartbeats = "lifeboat.heartbeat.*"

	// HeartbeatPrefix is the subject prefix of heartbeats, and the Subject
	// of HostHeartbeat in the catalog.
	HeartbeatPrefix = "lifeboat.heartbeat"
)

// The six services, as they name their commands, dead letters, API
// subjects and micro services (lifeboat-<name>).
const (
	ServiceBackupScheduler = "backup-scheduler"
	ServiceSync            = "sync"
	ServiceRestore         = "restore"
	ServiceJobTracker      = "job-tracker"
	ServiceVolumeMonitor   = "volume-monitor"
	ServiceDNSUpdater      = "dns-updater"
)

// Services lists the six services in a stable order. Treat it as read-only.
var Services = []string{
	ServiceBackupScheduler,
	ServiceSync,
	ServiceRestore,
	ServiceJobTracker,
	ServiceVolumeMonitor,
	ServiceDNSUpdater,
}

// registry is the v1 catalog in DESIGN §2's order: every message's Go type
// and the two words its subject and CloudEvents type are made of. For an
// event they are the aggregate and the name (lifeboat.event.host.down,
// io.lifeboat.host.down.v1); for a command, the consuming service and the
// verb (lifeboat.cmd.sync.kick, io.lifeboat.cmd.sync.kick.v1). Words are
// lower case, multi-word ones in kebab case.
var registry = []struct {
	value any
	kind  Kind
	first string // aggregate, or service for a command
	name  string // event name, or verb for a command
}{
	{HostHeartbeat{}, Heartbeat, "host", "heartbeat"},
	{HostDown{}, Event, "host", "down"},
	{HostUp{}, Event, "host", "up"},

	{BackupTaken{}, Event, "backup", "taken"},
	{BackupFailed{}, Event, "backup", "failed"},
	{BackupPruned{}, Event, "backup", "pruned"},
	{PlanChanged{}, Event, "plan", "changed"},

	{SyncCompleted{}, Event, "sync", "completed"},
	{SyncFailed{}, Event, "sync", "failed"},
	{SyncStalled{}, Event, "sync", "stalled"},

	{VolumeOverflow{}, Event, "volume", "overflow"},
	{VolumeNearFull{}, Event, "volume", "near-full"},
	{VolumeRecovered{}, Event, "volume", "recovered"},

	{RestoreStaged{}, Event, "restore", "staged"},
	{RestoreCommitted{}, Event, "restore", "committed"},
	{RestoreFailed{}, Event, "restore", "failed"},

	{FailoverStarted{}, Event, "failover", "started"},
	{InstanceActivated{}, Event, "instance", "activated"},
	{FailoverCompleted{}, Event, "failover", "completed"},

	{JobStarted{}, Event, "job", "started"},
	{JobHeartbeat{}, Event, "job", "heartbeat"},
	{JobExited{}, Event, "job", "exited"},
	{JobLost{}, Event, "job", "lost"},
	{JobBuried{}, Event, "job", "buried"},
	{JobRetried{}, Event, "job", "retried"},
	{JobKillRequested{}, Event, "job", "kill-requested"},

	{DNSRecordUpdated{}, Event, "dns", "record-updated"},
	{DNSUpdateFailed{}, Event, "dns", "update-failed"},

	{CommandAudited{}, Event, "audit", "command"},

	{BackupTake{}, Command, ServiceBackupScheduler, "take"},
	{SyncKick{}, Command, ServiceSync, "kick"},
	{SyncStartSynchronizing{}, Command, ServiceSync, "start-synchronizing"},
	{SyncStopSynchronizing{}, Command, ServiceSync, "stop-synchronizing"},
	{SyncPromote{}, Command, ServiceSync, "promote"},
	{RestoreFailover{}, Command, ServiceRestore, "failover"},
	{JobTrackerConfirmDead{}, Command, ServiceJobTracker, "confirm-dead"},
	{JobTrackerKick{}, Command, ServiceJobTracker, "kick"},
	{DNSSet{}, Command, ServiceDNSUpdater, "set"},
}

// EventSubject is the subject of the event aggregate.name,
// e.g. EventSubject("host", "down") = "lifeboat.event.host.down".
func EventSubject(aggregate, name string) string {
	return "lifeboat.event." + aggregate + "." + name
}

// CommandSubject is the subject of service's command verb,
// e.g. CommandSubject("sync", "kick") = "lifeboat.cmd.sync.kick".
func CommandSubject(service, verb string) string {
	return "lifeboat.cmd." + service + "." + verb
}

// DLQSubject is the dead-letter subject of service,
// e.g. "lifeboat.dlq.job-tracker".
func DLQSubject(service string) string { return "lifeboat.dlq." + service }

// APISubject is the request/reply subject of service's endpoint,
// e.g. "lifeboat.api.sync.status"; with an empty endpoint it is the
// service's prefix, "lifeboat.api.sync", the micro service group.
func APISubject(service, endpoint string) string {
	if endpoint == "" {
		return "lifeboat.api." + service
	}
	return "lifeboat.api." + service + "." + endpoint
}

// HeartbeatSubject is the subject host's heartbeats are published on,
// lifeboat.heartbeat.<host>. The host becomes one lower-case subject token:
// dots and white space turn into '_' (a fully qualified hostname must not
// become several tokens, or lifeboat.heartbeat.* would not match it); the
// body carries the host's name unchanged. The wildcards "*" and ">" pass
// through, for subscribing.
func HeartbeatSubject(host string) string {
	return HeartbeatPrefix + "." + subjectToken(host)
}

// subjectToken makes s one lower-case NATS subject token.
func subjectToken(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', ' ', '\t', '\r', '\n', '\f', '\v':
			return '_'
		}
		return r
	}, strings.ToLower(s))
}

func ceTypeOf(kind Kind, first, name string) string {
	if kind == Command {
		return "io.lifeboat.cmd." + first + "." + name + ".v1"
	}
	return "io.lifeboat." + first + "." + name + ".v1"
}

func subjectOf(kind Kind, first, name string) string {
	switch kind {
	case Command:
		return CommandSubject(first, name)
	case Heartbeat:
		return HeartbeatPrefix
	}
	return EventSubject(first, name)
}
