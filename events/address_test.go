package events_test

import (
	"testing"

	"lifeboat.dev/events"
)

func TestHostCommandSubjects(t *testing.T) {
	take, _ := events.TypeOf(&events.BackupTake{})
	got, err := events.HostCommandSubject(take, "hot")
	if err != nil || got != "lifeboat.cmd.backup-scheduler.hot.take" {
		t.Fatalf("HostCommandSubject = %q, %v", got, err)
	}
	if back, ok := events.BySubject(got); !ok || back.Name != "BackupTake" {
		t.Fatalf("BySubject(%q) = %v, %v; want BackupTake", got, back, ok)
	}
	if h, ok := events.AddressedHost(got); !ok || h != "hot" {
		t.Fatalf("AddressedHost(%q) = %q, %v", got, h, ok)
	}
	if _, ok := events.AddressedHost(take.Subject); ok {
		t.Fatalf("AddressedHost(%q) found a host in an unaddressed command", take.Subject)
	}
	if f := events.HostCommandFilter("sync", "cold"); f != "lifeboat.cmd.sync.cold.*" {
		t.Fatalf("HostCommandFilter = %q", f)
	}
	for _, bad := range []string{"", "a.b", "a b", "*", ">"} {
		if _, err := events.HostCommandSubject(take, bad); err == nil {
			t.Errorf("host %q accepted", bad)
		}
	}
	down, _ := events.TypeOf(&events.HostDown{})
	if _, err := events.HostCommandSubject(down, "hot"); err == nil {
		t.Error("an event was addressed to a host")
	}
	if _, ok := events.BySubject("lifeboat.event.host.hot.down"); ok {
		t.Error("an event subject with a host token was taken for an event")
	}
	if s := events.HostAPISubject("sync", "cold", "digest"); s != "lifeboat.api.sync.cold.digest" {
		t.Fatalf("HostAPISubject = %q", s)
	}
}
