package events

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// The v1 catalog as DESIGN §2 names it: every type, its kind, subject and
// CloudEvents type. Changing a row here breaks every producer and consumer
// of that type.
var want = []struct {
	name, kind, subject, ce, service string
}{
	{"HostHeartbeat", "heartbeat", "lifeboat.heartbeat", "io.lifeboat.host.heartbeat.v1", ""},
	{"HostDown", "event", "lifeboat.event.host.down", "io.lifeboat.host.down.v1", ""},
	{"HostUp", "event", "lifeboat.event.host.up", "io.lifeboat.host.up.v1", ""},
	{"BackupTaken", "event", "lifeboat.event.backup.taken", "io.lifeboat.backup.taken.v1", ""},
	{"BackupFailed", "event", "lifeboat.event.backup.failed", "io.lifeboat.backup.failed.v1", ""},
	{"BackupPruned", "event", "lifeboat.event.backup.pruned", "io.lifeboat.backup.pruned.v1", ""},
	{"PlanChanged", "event", "lifeboat.event.plan.changed", "io.lifeboat.plan.changed.v1", ""},
	{"SyncCompleted", "event", "lifeboat.event.sync.completed", "io.lifeboat.sync.completed.v1", ""},
	{"SyncFailed", "event", "lifeboat.event.sync.failed", "io.lifeboat.sync.failed.v1", ""},
	{"SyncStalled", "event", "lifeboat.event.sync.stalled", "io.lifeboat.sync.stalled.v1", ""},
	{"VolumeOverflow", "event", "lifeboat.event.volume.overflow", "io.lifeboat.volume.overflow.v1", ""},
	{"VolumeNearFull", "event", "lifeboat.event.volume.near-full", "io.lifeboat.volume.near-full.v1", ""},
	{"VolumeRecovered", "event", "lifeboat.event.volume.recovered", "io.lifeboat.volume.recovered.v1", ""},
	{"RestoreStaged", "event", "lifeboat.event.restore.staged", "io.lifeboat.restore.staged.v1", ""},
	{"RestoreCommitted", "event", "lifeboat.event.restore.committed", "io.lifeboat.restore.committed.v1", ""},
	{"RestoreFailed", "event", "lifeboat.event.restore.failed", "io.lifeboat.restore.failed.v1", ""},
	{"FailoverStarted", "event", "lifeboat.event.failover.started", "io.lifeboat.failover.started.v1", ""},
	{"InstanceActivated", "event", "lifeboat.event.instance.activated", "io.lifeboat.instance.activated.v1", ""},
	{"FailoverCompleted", "event", "lifeboat.event.failover.completed", "io.lifeboat.failover.completed.v1", ""},
	{"JobStarted", "event", "lifeboat.event.job.started", "io.lifeboat.job.started.v1", ""},
	{"JobHeartbeat", "event", "lifeboat.event.job.heartbeat", "io.lifeboat.job.heartbeat.v1", ""},
	{"JobExited", "event", "lifeboat.event.job.exited", "io.lifeboat.job.exited.v1", ""},
	{"JobLost", "event", "lifeboat.event.job.lost", "io.lifeboat.job.lost.v1", ""},
	{"JobBuried", "event", "lifeboat.event.job.buried", "io.lifeboat.job.buried.v1", ""},
	{"JobRetried", "event", "lifeboat.event.job.retried", "io.lifeboat.job.retried.v1", ""},
	{"JobKillRequested", "event", "lifeboat.event.job.kill-requested", "io.lifeboat.job.kill-requested.v1", ""},
	{"DNSRecordUpdated", "event", "lifeboat.event.dns.record-updated", "io.lifeboat.dns.record-updated.v1", ""},
	{"DNSUpdateFailed", "event", "lifeboat.event.dns.update-failed", "io.lifeboat.dns.update-failed.v1", ""},
	{"CommandAudited", "event", "lifeboat.event.audit.command", "io.lifeboat.audit.command.v1", ""},
	{"BackupTake", "command", "lifeboat.cmd.backup-scheduler.take", "io.lifeboat.cmd.backup-scheduler.take.v1", "backup-scheduler"},
	{"SyncKick", "command", "lifeboat.cmd.sync.kick", "io.lifeboat.cmd.sync.kick.v1", "sync"},
	{"SyncStartSynchronizing", "command", "lifeboat.cmd.sync.start-synchronizing", "io.lifeboat.cmd.sync.start-synchronizing.v1", "sync"},
	{"SyncStopSynchronizing", "command", "lifeboat.cmd.sync.stop-synchronizing", "io.lifeboat.cmd.sync.stop-synchronizing.v1", "sync"},
	{"SyncPromote", "command", "lifeboat.cmd.sync.promote", "io.lifeboat.cmd.sync.promote.v1", "sync"},
	{"RestoreFailover", "command", "lifeboat.cmd.restore.failover", "io.lifeboat.cmd.restore.failover.v1", "restore"},
	{"JobTrackerConfirmDead", "command", "lifeboat.cmd.job-tracker.confirm-dead", "io.lifeboat.cmd.job-tracker.confirm-dead.v1", "job-tracker"},
	{"JobTrackerKick", "command", "lifeboat.cmd.job-tracker.kick", "io.lifeboat.cmd.job-tracker.kick.v1", "job-tracker"},
	{"DNSSet", "command", "lifeboat.cmd.dns-updater.set", "io.lifeboat.cmd.dns-updater.set.v1", "dns-updater"},
}

func TestCatalogIsTheV1Catalog(t *testing.T) {
	cat := Catalog()
	if len(cat) != len(want) {
		t.Fatalf("Catalog() has %d types, want %d", len(cat), len(want))
	}
	for i, w := range want {
		got := cat[i]
		if got.Name != w.name || got.Kind.String() != w.kind || got.Subject != w.subject || got.CEType != w.ce || got.Service != w.service {
			t.Errorf("Catalog()[%d] = %s %s %s %s %q, want %s %s %s %s %q", i,
				got.Name, got.Kind, got.Subject, got.CEType, got.Service, w.name, w.kind, w.subject, w.ce, w.service)
		}
	}
}

func TestCatalogIsACopy(t *testing.T) {
	Catalog()[0].Name = "mangled"
	if Catalog()[0].Name != "HostHeartbeat" {
		t.Fatal("changing Catalog()'s result changed the catalog")
	}
}

func TestLookupsRoundTrip(t *testing.T) {
	for _, typ := range Catalog() {
		t.Run(typ.Name, func(t *testing.T) {
			subject := typ.Subject
			if typ.Kind == Heartbeat {
				subject = HeartbeatSubject("hot-1")
			}
			if got, ok := BySubject(subject); !ok || got != typ {
				t.Errorf("BySubject(%q) = %v, %v; want %v", subject, got.Name, ok, typ.Name)
			}
			if got, ok := ByCEType(typ.CEType); !ok || got != typ {
				t.Errorf("ByCEType(%q) = %v, %v", typ.CEType, got.Name, ok)
			}
			v := typ.New()
			if got, ok := TypeOf(v); !ok || got != typ {
				t.Errorf("TypeOf(%T) = %v, %v", v, got.Name, ok)
			}
			elem := reflect.ValueOf(v).Elem().Interface()
			if got, ok := TypeOf(elem); !ok || got != typ {
				t.Errorf("TypeOf(%T value) = %v, %v", elem, got.Name, ok)
			}
			if name := reflect.TypeOf(v).Elem().Name(); name != typ.Name {
				t.Errorf("New() made a *%s, want *%s", name, typ.Name)
			}
		})
	}
}

func TestLookupsRefuseUnknowns(t *testing.T) {
	for _, s := range []string{"", "lifeboat.event.host", "lifeboat.event.host.down.extra", "LIFEBOAT.EVENT.HOST.DOWN",
		"lifeboat.event.host.gone", "lifeboat.heartbeat", "lifeboat.heartbeat.", "lifeboat.event.>", "io.lifeboat.host.down.v1"} {
		if typ, ok := BySubject(s); ok {
			t.Errorf("BySubject(%q) = %s, want not found", s, typ.Name)
		}
	}
	for _, s := range []string{"", "io.lifeboat.host.down.v2", "io.lifeboat.host.down", "lifeboat.event.host.down", "HostDown"} {
		if typ, ok := ByCEType(s); ok {
			t.Errorf("ByCEType(%q) = %s, want not found", s, typ.Name)
		}
	}
	var nilDown *HostDown
	for _, v := range []any{nil, 42, "HostDown", struct{ Host string }{}, []HostDown{}, new(*HostDown)} {
		if typ, ok := TypeOf(v); ok {
			t.Errorf("TypeOf(%T) = %s, want not found", v, typ.Name)
		}
	}
	if typ, ok := TypeOf(nilDown); !ok || typ.Name != "HostDown" {
		t.Errorf("TypeOf((*HostDown)(nil)) = %s, %v; want HostDown (the type is known)", typ.Name, ok)
	}
	if (Type{}).New() != nil {
		t.Error("Type{}.New() is not nil")
	}
}

func TestSubjectsAreLowerCaseAndOnTheirStreams(t *testing.T) {
	for _, typ := range Catalog() {
		if typ.Subject != strings.ToLower(typ.Subject) || typ.CEType != strings.ToLower(typ.CEType) {
			t.Errorf("%s: subject %q or type %q is not lower case", typ.Name, typ.Subject, typ.CEType)
		}
		for _, tok := range strings.Split(typ.Subject, ".") {
			if tok == "" || strings.ContainsAny(tok, " *>\t") {
				t.Errorf("%s: subject %q has a bad token %q", typ.Name, typ.Subject, tok)
			}
		}
		var filter string
		switch typ.Kind {
		case Event:
			filter = SubjectEvents
		case Command:
			filter = SubjectCommands
			if !slices.Contains(Services, typ.Service) {
				t.Errorf("%s: consumed by %q, which is not a service", typ.Name, typ.Service)
			}
		case Heartbeat:
			filter = SubjectHeartbeats
			if !subjectMatches(filter, HeartbeatSubject("hot-1")) {
				t.Errorf("heartbeat subject %q does not match %q", HeartbeatSubject("hot-1"), filter)
			}
			continue
		default:
			t.Errorf("%s: kind %v", typ.Name, typ.Kind)
			continue
		}
		if !subjectMatches(filter, typ.Subject) {
			t.Errorf("%s: subject %q does not match its stream's filter %q", typ.Name, typ.Subject, filter)
		}
		for _, other := range []string{SubjectEvents, SubjectCommands, SubjectDLQ, SubjectHeartbeats} {
			if other != filter && subjectMatches(other, typ.Subject) {
				t.Errorf("%s: subject %q also matches %q", typ.Name, typ.Subject, other)
			}
		}
	}
	for _, s := range Services {
		if !subjectMatches(SubjectDLQ, DLQSubject(s)) {
			t.Errorf("DLQSubject(%q) = %q is not on %s", s, DLQSubject(s), StreamDLQ)
		}
		if subjectMatches(SubjectEvents, APISubject(s, "status")) || subjectMatches(SubjectCommands, APISubject(s, "status")) {
			t.Errorf("APISubject(%q) = %q lands on a stream", s, APISubject(s, "status"))
		}
	}
}

// subjectMatches reports whether a NATS subject matches filter, with its
// wildcards: * one token, > one or more at the end.
func subjectMatches(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}

func TestSubjectHelpers(t *testing.T) {
	tests := []struct{ got, want string }{
		{EventSubject("host", "down"), "lifeboat.event.host.down"},
		{CommandSubject(ServiceBackupScheduler, "take"), "lifeboat.cmd.backup-scheduler.take"},
		{DLQSubject(ServiceJobTracker), "lifeboat.dlq.job-tracker"},
		{APISubject(ServiceSync, "status"), "lifeboat.api.sync.status"},
		{APISubject(ServiceSync, ""), "lifeboat.api.sync"},
		{HeartbeatSubject("hot-1"), "lifeboat.heartbeat.hot-1"},
		{HeartbeatSubject("Node1.Example.COM"), "lifeboat.heartbeat.node1_example_com"},
		{HeartbeatSubject("a b"), "lifeboat.heartbeat.a_b"},
		{HeartbeatSubject(""), "lifeboat.heartbeat._"},
		{HeartbeatSubject("*"), SubjectHeartbeats},
		{SubjectOf[HostDown](), "lifeboat.event.host.down"},
		{SubjectOf[InstanceActivated](), "lifeboat.event.instance.activated"},
		{SubjectOf[DNSSet](), "lifeboat.cmd.dns-updater.set"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	if got, want := Services, []string{"backup-scheduler", "sync", "restore", "job-tracker", "volume-monitor", "dns-updater"}; !slices.Equal(got, want) {
		t.Errorf("Services = %v, want %v", got, want)
	}
	if got, ok := BySubject(HeartbeatSubject("Node1.Example.COM")); !ok || got.Name != "HostHeartbeat" {
		t.Errorf("BySubject(a dotted host's heartbeat) = %s, %v", got.Name, ok)
	}
}

func TestSubjectOfPanicsOutsideTheCatalog(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("SubjectOf[struct{}] did not panic")
		}
	}()
	SubjectOf[struct{}]()
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Event: "event", Command: "command", Heartbeat: "heartbeat", 0: "Kind(0)"} {
		if k.String() != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), k.String(), want)
		}
	}
}

func TestMillis(t *testing.T) {
	if got := MillisOf(1500*time.Microsecond + 2*time.Second); got != 2001 {
		t.Errorf("MillisOf(2.0015s) = %d, want 2001", got)
	}
	if got := Millis(250).Duration(); got != 250*time.Millisecond {
		t.Errorf("Millis(250).Duration() = %v", got)
	}
}
