package presence_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/presence"
	"lifeboat.dev/pkg/testtool"
)

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// open opens the presence bucket on a fresh embedded server.
func open(t *testing.T, o presence.Options) (*presence.Bucket, jetstream.KeyValue) {
	t.Helper()
	_, b := bustest.Embedded(t)
	p, err := presence.Open(ctxFor(t), b.JS, o)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := b.JS.KeyValue(ctxFor(t), presence.BucketName)
	if err != nil {
		t.Fatal(err)
	}
	return p, kv
}

// identity is a process of host with its own data directory (and so its
// own nonce).
func identity(t *testing.T, host string, pid int, services ...string) presence.Identity {
	t.Helper()
	return identityIn(t, t.TempDir(), host, pid, services...)
}

func identityIn(t *testing.T, dir, host string, pid int, services ...string) presence.Identity {
	t.Helper()
	n, err := presence.LoadNonce(dir)
	if err != nil {
		t.Fatal(err)
	}
	return presence.Identity{Host: host, Services: services, PID: pid, Hostname: "machine-" + host,
		Address: "127.0.0.1:9180", NATS: "nats://127.0.0.1:4222", DataDir: dir,
		StartedAt: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC).Add(time.Duration(pid) * time.Second), Nonce: n}
}

func read(t *testing.T, kv jetstream.KeyValue, key string) (presence.Record, error) {
	t.Helper()
	e, err := kv.Get(context.Background(), key)
	if err != nil {
		return presence.Record{}, err
	}
	var r presence.Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return r, nil
}

func TestClaimWritesTheRecordWithTheNonceHashOnly(t *testing.T) {
	p, kv := open(t, presence.NewOptions())
	id := identity(t, "hot", 41, "sync")
	if _, err := p.Claim(ctxFor(t), id); err != nil {
		t.Fatal(err)
	}
	r, err := read(t, kv, "hot.sync")
	if err != nil {
		t.Fatal(err)
	}
	if r.Host != "hot" || r.Service != "sync" || r.PID != 41 || r.Hostname != "machine-hot" || r.Address != id.Address ||
		r.NATS != id.NATS || !r.StartedAt.Equal(id.StartedAt) || r.NonceSHA256 != id.Nonce.Hash() || len(r.NonceSHA256) != 64 {
		t.Fatalf("record %+v, want the identity %+v", r, id)
	}
	nonce, err := os.ReadFile(filepath.Join(id.DataDir, presence.NonceFile))
	if err != nil {
		t.Fatal(err)
	}
	e, _ := kv.Get(context.Background(), "hot.sync")
	if strings.Contains(string(e.Value()), strings.TrimSpace(string(nonce))) {
		t.Fatalf("the record carries the nonce itself: %s", e.Value())
	}
	st, err := kv.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != presence.DefaultTTL || st.History() != 1 {
		t.Fatalf("bucket TTL %s, history %d; want %s, 1", st.TTL(), st.History(), presence.DefaultTTL)
	}
}

func TestAnotherNonceIsRefusedNamingTheLiveProcess(t *testing.T) {
	p, _ := open(t, presence.NewOptions())
	live := identity(t, "hot", 41, "sync")
	live.Address, live.NATS = "10.0.0.1:9180", "nats://10.0.0.1:4222"
	if _, err := p.Claim(ctxFor(t), live); err != nil {
		t.Fatal(err)
	}
	_, err := p.Claim(ctxFor(t), identity(t, "hot", 99, "sync"))
	var te *presence.TakenError
	if !errors.As(err, &te) {
		t.Fatalf("second claim: %v, want a *TakenError", err)
	}
	for _, want := range []string{"hot", "sync", "pid 41", "machine-hot", "http 10.0.0.1:9180", "NATS nats://10.0.0.1:4222",
		"started " + live.StartedAt.Format(time.RFC3339), "another --host", "stop that one", "lapses within 10s of its last renewal"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message lacks %q: %s", want, err)
		}
	}
	if te.Holder.PID != 41 || te.Key != "hot.sync" {
		t.Fatalf("TakenError %+v, want pid 41 on hot.sync", te)
	}
	// Another host, or another service of the same host, is not refused.
	if _, err := p.Claim(ctxFor(t), identity(t, "cold", 99, "sync")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Claim(ctxFor(t), identity(t, "hot", 99, "restore")); err != nil {
		t.Fatal(err)
	}
}

func TestTheSameDataDirectoryReclaimsAtOnce(t *testing.T) {
	p, kv := open(t, presence.NewOptions())
	dir := t.TempDir()
	if _, err := p.Claim(ctxFor(t), identityIn(t, dir, "hot", 41, "sync")); err != nil {
		t.Fatal(err)
	}
	// Killed without a release: the key is still held. The restarted
	// process reclaims it at once, not after the TTL.
	start := time.Now()
	again := identityIn(t, dir, "hot", 42, "sync")
	pr, err := p.Claim(ctxFor(t), again)
	if err != nil {
		t.Fatalf("restart refused: %v", err)
	}
	if took := time.Since(start); took > presence.DefaultTTL/2 {
		t.Fatalf("reclaim took %s", took)
	}
	if old, ok := pr.Reclaimed["hot.sync"]; !ok || old.PID != 41 {
		t.Fatalf("reclaimed %+v, want the record of pid 41", pr.Reclaimed)
	}
	r, err := read(t, kv, "hot.sync")
	if err != nil || r.PID != 42 || !r.StartedAt.Equal(again.StartedAt) {
		t.Fatalf("record %+v (%v), want pid 42's", r, err)
	}
}

func TestTwoServicesAndARefusalGivesBackWhatItTook(t *testing.T) {
	p, kv := open(t, presence.NewOptions())
	live := identity(t, "hot", 41, "restore", "sync")
	pr, err := p.Claim(ctxFor(t), live)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(pr.Keys(), ","); got != "hot.restore,hot.sync" {
		t.Fatalf("keys %s", got)
	}
	// A duplicate running dns-updater and sync takes hot.dns-updater
	// first, is refused at hot.sync, and gives hot.dns-updater back.
	_, err = p.Claim(ctxFor(t), identity(t, "hot", 99, "dns-updater", "sync"))
	var te *presence.TakenError
	if !errors.As(err, &te) || te.Key != "hot.sync" {
		t.Fatalf("duplicate: %v, want refused at hot.sync", err)
	}
	if _, err := read(t, kv, "hot.dns-updater"); !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrKeyDeleted) {
		t.Fatalf("hot.dns-updater after the refusal: %v, want gone", err)
	}
	// A clean stop releases both keys: the next process, from any
	// directory, claims at once.
	if err := pr.Release(ctxFor(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Claim(ctxFor(t), identity(t, "hot", 100, "restore", "sync")); err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestHoldRenewsAndRecreatesAGoneKey(t *testing.T) {
	o := presence.NewOptions()
	o.TTL, o.Renew = 2*time.Second, 100*time.Millisecond
	p, kv := open(t, o)
	id := identity(t, "hot", 41, "sync")
	pr, err := p.Claim(ctxFor(t), id)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pr.Hold(ctx) }()
	first, _ := kv.Get(context.Background(), "hot.sync")
	testtool.WaitFor(t, 5*time.Second, func() error {
		e, err := kv.Get(context.Background(), "hot.sync")
		if err != nil || e.Revision() == first.Revision() {
			return errors.New("not renewed yet")
		}
		return nil
	})
	// Gone (as after renewals stalled past the TTL): Hold takes it again.
	if err := kv.Purge(context.Background(), "hot.sync"); err != nil {
		t.Fatal(err)
	}
	testtool.WaitFor(t, 5*time.Second, func() error {
		r, err := read(t, kv, "hot.sync")
		if err != nil {
			return err
		}
		if r.NonceSHA256 != id.Nonce.Hash() {
			return errors.New("held by another nonce")
		}
		return nil
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Hold: %v, want nil once its context ends", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Hold did not return after its context ended")
	}
}

func TestHoldEndsWhenAnotherProcessHoldsTheKey(t *testing.T) {
	o := presence.NewOptions()
	o.Renew = 50 * time.Millisecond
	p, kv := open(t, o)
	pr, err := p.Claim(ctxFor(t), identity(t, "hot", 41, "sync"))
	if err != nil {
		t.Fatal(err)
	}
	// The key lapsed and another process took it before this one renewed.
	if err := kv.Purge(context.Background(), "hot.sync"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Claim(ctxFor(t), identity(t, "hot", 99, "sync")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- pr.Hold(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, presence.ErrLost) || !strings.Contains(err.Error(), "pid 99") {
			t.Fatalf("Hold: %v, want ErrLost naming pid 99", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Hold did not end")
	}
}

func TestAnUnrenewedClaimLapsesWithinTheTTL(t *testing.T) {
	o := presence.NewOptions()
	o.TTL = time.Second
	p, _ := open(t, o)
	if _, err := p.Claim(ctxFor(t), identity(t, "hot", 41, "sync")); err != nil {
		t.Fatal(err)
	}
	dup := identity(t, "hot", 99, "sync")
	if _, err := p.Claim(ctxFor(t), dup); err == nil {
		t.Fatal("claimed while held")
	}
	// The holder died (no Hold): a second later the host is free.
	testtool.WaitFor(t, 5*time.Second, func() error {
		_, err := p.Claim(ctxFor(t), dup)
		return err
	})
}

func TestKeyRefusesNamesThatAreNotOneToken(t *testing.T) {
	for _, tc := range []struct {
		host, service string
		ok            bool
	}{
		{"hot", "sync", true},
		{"h-1_b", "dns-updater", true},
		{"hot.example", "sync", false},
		{"hot", "a.b", false},
		{"", "sync", false},
		{"hot", "", false},
		{"h*", "sync", false},
		{"h>", "sync", false},
		{"h 1", "sync", false},
	} {
		t.Run(tc.host+"/"+tc.service, func(t *testing.T) {
			key, err := presence.Key(tc.host, tc.service)
			if (err == nil) != tc.ok {
				t.Fatalf("Key(%q, %q) = %q, %v", tc.host, tc.service, key, err)
			}
		})
	}
}
