package dnsupdater

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/pkg/telemetry"
	"lifeboat.dev/pkg/testtool"
	"lifeboat.dev/services/dns-updater/internal/db"
	"lifeboat.dev/services/dns-updater/provider"
	"lifeboat.dev/services/dns-updater/provider/embedded"
	lbsql "lifeboat.dev/sql"
)

// The handlers and the change worker called directly, without a bus: the
// service's database opened with store.Open in a temporary directory, a
// handler called inside db.Update, and what it left in the work queue,
// in dns_jobs and in the outbox read back.

// direct is a dns-updater whose handlers and worker a test calls itself.
type direct struct {
	t  *testing.T
	s  *Service
	db *store.DB
}

// openDirect opens the service's database and the embedded provider on it
// (serving on a loopback port, so the worker can verify) for cfg.
func openDirect(t *testing.T, cfg Config) *direct {
	t.Helper()
	if err := cfg.Validate(nil, "dns"); err != nil {
		t.Fatal(err)
	}
	migrations, err := lbsql.Migrations(Name)
	if err != nil {
		t.Fatal(err)
	}
	sdb, err := store.Open(t.Context(), filepath.Join(t.TempDir(), "state.db"), store.NewOptions("lifeboat/test-host/"+Name, migrations))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sdb.Close() })
	s := newService(cfg)
	s.db, s.log = sdb, quiet
	if cfg.Enabled() {
		opts := embedded.NewOptions(cfg.Zone)
		opts.Addr, opts.ZoneFile, opts.Owned, opts.Logger = cfg.Embedded.Listen, cfg.Embedded.ZoneFile, cfg.owned(), quiet
		srv, err := embedded.Open(t.Context(), sdb, opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		s.p, s.emb = srv, srv
	}
	return &direct{t: t, s: s, db: sdb}
}

// handle applies ev with h in a transaction of its own, as message id,
// and returns the delivery it made up.
func handle[T any](d *direct, h func(context.Context, *store.Tx, *T, service.Delivery) error, ev *T, id string) service.Delivery {
	d.t.Helper()
	m := service.Delivery{ID: id, Subject: events.SubjectOf[T](), Delivered: 1, Timestamp: time.Now()}
	if err := d.db.Update(d.t.Context(), func(tx *store.Tx) error { return h(d.t.Context(), tx, ev, m) }); err != nil {
		d.t.Fatalf("handling %T %s: %v", ev, id, err)
	}
	return m
}

// queued is a job of the work queue with its payload and dns_jobs row.
type queued struct {
	store.QueuedJob
	payload changeJob
	row     db.DnsJob
}

// jobs returns the queued jobs, oldest first.
func (d *direct) jobs() []queued {
	d.t.Helper()
	js, err := d.db.Jobs(d.t.Context(), 100)
	if err != nil {
		d.t.Fatal(err)
	}
	var out []queued
	for _, j := range js {
		q := queued{QueuedJob: j}
		var payload []byte
		if err := d.db.R.QueryRowContext(d.t.Context(), `SELECT payload FROM work WHERE id = ?`, j.ID).Scan(&payload); err != nil {
			d.t.Fatal(err)
		}
		if err := json.Unmarshal(payload, &q.payload); err != nil {
			d.t.Fatalf("job %s: payload %s: %v", j.ID, payload, err)
		}
		row, err := db.New(d.db.R).GetJob(d.t.Context(), j.ID)
		if err != nil {
			d.t.Fatalf("job %s has no dns_jobs row: %v", j.ID, err)
		}
		q.row = row
		out = append(out, q)
	}
	if n, err := db.New(d.db.R).CountJobs(d.t.Context()); err != nil || int(n) != len(out) {
		d.t.Fatalf("%d dns_jobs rows (%v) for %d queued jobs", n, err, len(out))
	}
	return out
}

// outbox returns the events waiting in the outbox, decoded, oldest first.
func (d *direct) outbox() []any {
	d.t.Helper()
	rows, err := d.db.R.QueryContext(d.t.Context(), `SELECT subject, headers, body FROM outbox ORDER BY seq`)
	if err != nil {
		d.t.Fatal(err)
	}
	defer rows.Close()
	var out []any
	for rows.Next() {
		var subject, headers string
		var body []byte
		if err := rows.Scan(&subject, &headers, &body); err != nil {
			d.t.Fatal(err)
		}
		typ, ok := events.BySubject(subject)
		if !ok {
			d.t.Fatalf("outbox holds %s, not in the catalog", subject)
		}
		v, err := events.Decode(typ, body)
		if err != nil {
			d.t.Fatalf("outbox %s: %v", subject, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		d.t.Fatal(err)
	}
	return out
}

// work runs the worker on the oldest queued job as its attempt-th start
// and, when it returns an outcome, records it as the queue does: in the
// transaction that removes the job.
func (d *direct) work(attempt int) error {
	d.t.Helper()
	js := d.jobs()
	if len(js) == 0 {
		d.t.Fatal("no job queued")
	}
	j := js[0]
	finish, err := d.s.applyChange(d.t.Context(), service.Job{ID: j.ID, Kind: j.Kind, Key: j.Key, Attempt: attempt}, &j.payload)
	if err != nil {
		return err
	}
	return d.db.Update(d.t.Context(), func(tx *store.Tx) error {
		if _, err := tx.WorkDone(d.t.Context(), j.ID); err != nil {
			return err
		}
		return finish(d.t.Context(), tx)
	})
}

func TestHandlersEnqueueOneJobPerChangeKeyedByName(t *testing.T) {
	cfg := testConfig(t)
	cfg.LowerTTLBefore = 5
	d := openDirect(t, cfg)
	s := d.s

	handle(d, s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.7", Epoch: 3}, "a3")
	// The same message handled again (a batch applied a second time): no
	// second job.
	handle(d, s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.7", Epoch: 3}, "a3")
	// Not newer than the epoch queued: ignored.
	handle(d, s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.8", Epoch: 3}, "a3-again")
	handle(d, s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.2", Epoch: 2}, "a2")
	// A drill switches nothing.
	handle(d, s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.9", Epoch: 9, Drill: true}, "drill")
	set := handle(d, s.handleDNSSet, &events.DNSSet{Name: "WEB.example.test", Address: "2001:db8::7", TTL: 30}, "cmd-1")
	handle(d, s.handleFailoverStarted, &events.FailoverStarted{Instance: "wr", To: "cold-1", Epoch: 4}, "fs4")

	js := d.jobs()
	got := make([]string, len(js))
	for i, j := range js {
		got[i] = fmt.Sprintf("%s %s %s %+v", j.ID, j.Kind, j.Key, j.payload)
	}
	want := []string{
		"change:a3 change wr.example.test. {Kind:activate Instance:wr Name:wr.example.test. Type:A Value:198.51.100.7 TTL:0 Epoch:3 RequestID:}",
		"change:cmd-1 change web.example.test. {Kind:set Instance:web Name:web.example.test. Type:AAAA Value:2001:db8::7 TTL:30 Epoch:0 RequestID:" + set.ID + "}",
		"change:fs4 change wr.example.test. {Kind:ttl Instance:wr Name:wr.example.test. Type:A Value: TTL:0 Epoch:0 RequestID:}",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("queued:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if r := js[0].row; r.Kind != kindActivate || r.Instance != "wr" || r.Epoch != 3 || r.Old.Valid || r.Applied != 0 {
		t.Fatalf("dns_jobs row of the activation = %+v", r)
	}
	if out := d.outbox(); len(out) != 0 {
		t.Fatalf("the handlers emitted %+v; only outcomes emit", out)
	}
	if l, err := db.New(d.db.R).GetLowered(t.Context(), "wr"); err != nil || l.Ttl != 5 {
		t.Fatalf("lowered = %+v (%v), want TTL 5", l, err)
	}

	// A set that cannot be applied is answered at once, with no job.
	handle(d, s.handleDNSSet, &events.DNSSet{Name: "keep.example.test.", Address: "192.0.2.8"}, "cmd-2")
	out := d.outbox()
	if len(out) != 1 {
		t.Fatalf("outbox %+v, want one DNSUpdateFailed", out)
	}
	if f, ok := out[0].(*events.DNSUpdateFailed); !ok || f.Name != "keep.example.test." || f.Reason != "NOT_OWNED" || f.Attempts != 0 || f.RequestID != "cmd-2" {
		t.Fatalf("outbox %+v, want DNSUpdateFailed NOT_OWNED answering cmd-2", out[0])
	}
	if n := len(d.jobs()); n != 3 {
		t.Fatalf("%d jobs after a refused set, want 3", n)
	}
}

func TestHandlersWithoutAZoneRefuseASetAndQueueNothing(t *testing.T) {
	d := openDirect(t, NewConfig())
	handle(d, d.s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.7", Epoch: 1}, "a1")
	handle(d, d.s.handleDNSSet, &events.DNSSet{Name: wr, Address: "198.51.100.7"}, "cmd-1")
	if n := len(d.jobs()); n != 0 {
		t.Fatalf("%d jobs queued without a zone", n)
	}
	out := d.outbox()
	if len(out) != 1 {
		t.Fatalf("outbox %+v", out)
	}
	if f, ok := out[0].(*events.DNSUpdateFailed); !ok || !strings.Contains(f.Error, "dns.zone") {
		t.Fatalf("outbox %+v, want DNSUpdateFailed pointing at dns.zone", out[0])
	}
}

// TestWorkerKeepsTheOldValueAcrossACrash: the worker reads the old value
// once and commits it before the first Set; an attempt after a crash
// between the Set and the outcome reports it, though the name already
// holds the new value.
func TestWorkerKeepsTheOldValueAcrossACrash(t *testing.T) {
	d := openDirect(t, testConfig(t))
	crash := errors.New("simulated crash after the Set")
	d.s.afterSet = func() error { return crash }
	handle(d, d.s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.7", Epoch: 1}, "a1")
	if err := d.work(1); !errors.Is(err, crash) {
		t.Fatalf("first attempt: %v, want the crash", err)
	}
	js := d.jobs()
	if len(js) != 1 || js[0].row.Old != (sql.NullString{String: "192.0.2.1", Valid: true}) || js[0].row.Applied != 1 {
		t.Fatalf("after the crash: %+v, want the job with old 192.0.2.1, applied", js)
	}
	if got, err := d.s.p.Get(t.Context(), wr, "A"); err != nil || got[0].Value != "198.51.100.7" {
		t.Fatalf("the name holds %v (%v) after the Set", got, err)
	}
	d.s.afterSet = nil
	if err := d.work(2); err != nil {
		t.Fatal(err)
	}
	out := d.outbox()
	if len(out) != 1 {
		t.Fatalf("outbox %+v", out)
	}
	u, ok := out[0].(*events.DNSRecordUpdated)
	if !ok || u.Old != "192.0.2.1" || u.New != "198.51.100.7" || u.Epoch != 1 || u.VerifiedAfter < 1 {
		t.Fatalf("outcome %+v, want 192.0.2.1 → 198.51.100.7 verified", out[0])
	}
	if n := len(d.jobs()); n != 0 {
		t.Fatalf("%d jobs after the outcome", n)
	}
	if e, err := db.New(d.db.R).GetEpoch(t.Context(), "wr"); err != nil || e.Epoch != 1 || e.Address != "198.51.100.7" {
		t.Fatalf("epoch %+v (%v)", e, err)
	}
}

// TestWorkerDropsSupersededAndStaleActivations: of two activations queued
// for one instance the older is skipped; one whose epoch was applied
// meanwhile is dropped. Neither changes the name or emits anything.
func TestWorkerDropsSupersededAndStaleActivations(t *testing.T) {
	d := openDirect(t, testConfig(t))
	s := d.s
	handle(d, s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.1", Epoch: 1}, "a1")
	handle(d, s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.2", Epoch: 2}, "a2")
	if err := d.work(1); err != nil { // epoch 1: superseded by 2
		t.Fatal(err)
	}
	if out := d.outbox(); len(out) != 0 {
		t.Fatalf("a superseded activation emitted %+v", out)
	}
	if got, _ := s.p.Get(t.Context(), wr, "A"); got[0].Value != "192.0.2.1" {
		t.Fatalf("a superseded activation set %v", got)
	}
	// Epoch 3 queued and applied (as if by an earlier worker) while 2 waits: 2 is stale.
	handle(d, s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.3", Epoch: 3}, "a3")
	if err := d.db.Update(t.Context(), func(tx *store.Tx) error {
		return db.New(tx).SetEpoch(t.Context(), db.SetEpochParams{Instance: "wr", Epoch: 3, Name: wr, Address: "198.51.100.3", AppliedAt: 1})
	}); err != nil {
		t.Fatal(err)
	}
	if err := d.work(1); err != nil { // epoch 2: stale
		t.Fatal(err)
	}
	if err := d.work(1); err != nil { // epoch 3: stale too (already applied)
		t.Fatal(err)
	}
	if out := d.outbox(); len(out) != 0 {
		t.Fatalf("stale activations emitted %+v", out)
	}
	if n := len(d.jobs()); n != 0 {
		t.Fatalf("%d jobs left", n)
	}
}

// TestWorkerRetriesATemporaryFailureThenGivesUp: a failure that may pass
// is returned to the queue until dns.retry.attempts, then the job ends
// with DNSUpdateFailed and its reason.
func TestWorkerRetriesATemporaryFailureThenGivesUp(t *testing.T) {
	cfg := testConfig(t)
	cfg.Verify.Timeout = 50 * time.Millisecond
	d := openDirect(t, cfg)
	// The change is accepted but never answered: not verified.
	d.s.p = lagging{d.s.p}
	handle(d, d.s.handleDNSSet, &events.DNSSet{Name: wr, Address: "198.51.100.7"}, "cmd-1")
	for attempt := 1; attempt < cfg.Retry.Attempts; attempt++ {
		if err := d.work(attempt); err == nil {
			t.Fatalf("attempt %d: no error, want a retry", attempt)
		}
		if n := len(d.jobs()); n != 1 {
			t.Fatalf("attempt %d: %d jobs, want the one to retry", attempt, n)
		}
	}
	if err := d.work(cfg.Retry.Attempts); err != nil {
		t.Fatal(err)
	}
	out := d.outbox()
	if len(out) != 1 {
		t.Fatalf("outbox %+v", out)
	}
	f, ok := out[0].(*events.DNSUpdateFailed)
	if !ok || f.Attempts != cfg.Retry.Attempts || f.Reason == "" || f.RequestID != "cmd-1" || !strings.Contains(f.Error, fmt.Sprintf("gave up after %d attempts", cfg.Retry.Attempts)) {
		t.Fatalf("outcome %+v, want DNSUpdateFailed after %d attempts with a reason", out[0], cfg.Retry.Attempts)
	}
	// The name was set but never verified: the history says so.
	hist, err := db.New(d.db.R).ListHistory(t.Context(), 10)
	if err != nil || len(hist) != 1 || hist[0].VerifiedAfterMs != -1 || hist[0].Old != "192.0.2.1" {
		t.Fatalf("history %+v (%v), want one unverified change from 192.0.2.1", hist, err)
	}
}

// lagging is a provider that accepts every change and never serves it, as
// a server whose answers do not follow its updates.
type lagging struct{ provider.Provider }

func (lagging) Set(context.Context, []provider.Record) error { return nil }

// TestTraceContinuesFromTheEvent: DNSRecordUpdated carries the trace of
// the InstanceActivated that asked for it, through the work queue.
func TestTraceContinuesFromTheEvent(t *testing.T) {
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "lifeboat-test", Host: "test-host"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tel.Shutdown(context.Background()) })
	h := start(t, testConfig(t))
	ctx, root := tel.TracerProvider().Tracer("test").Start(context.Background(), "incident")
	env, err := bus.NewEnvelope(ctx, "test", &events.InstanceActivated{Instance: "wr", From: "hot-1", To: "cold-1", Address: "198.51.100.7", Epoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	root.End()
	h.publishEnvelope(env, env.ID)
	h.waitUpdated(1)
	traceID := root.SpanContext().TraceID().String()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range h.seen {
		if m.Subject() != events.SubjectOf[events.DNSRecordUpdated]() {
			continue
		}
		tp := m.Headers().Get("traceparent")
		if parts := strings.Split(tp, "-"); len(parts) != 4 || parts[1] != traceID {
			t.Fatalf("DNSRecordUpdated traceparent %q, want trace %s", tp, traceID)
		}
		return
	}
	t.Fatal("no DNSRecordUpdated seen")
}

// TestChangesQueuedBeforeTheUpgradeAreApplied: a change an older version
// left in dns_changes is moved onto the work queue by the migration, with
// the old value it had read, and applied once the service runs.
func TestChangesQueuedBeforeTheUpgradeAreApplied(t *testing.T) {
	data := t.TempDir()
	all, err := lbsql.Migrations(Name)
	if err != nil {
		t.Fatal(err)
	}
	old := fstest.MapFS{}
	for _, name := range []string{"0001_init.sql", "0002_changes.sql"} {
		body, err := fs.ReadFile(all, name)
		if err != nil {
			t.Fatal(err)
		}
		old[name] = &fstest.MapFile{Data: body}
	}
	sdb, err := store.Open(t.Context(), service.DBPath(data, Name), store.NewOptions("test", old))
	if err != nil {
		t.Fatal(err)
	}
	if err := sdb.Update(t.Context(), func(tx *store.Tx) error {
		// An activation tried once (the name already set, not verified)
		// with its old value read, and a TTL change queued behind it.
		_, err := tx.ExecContext(t.Context(), `INSERT INTO dns_changes (kind, instance, name, type, value, ttl, epoch, trace, created_at, attempts, next_at, old, applied)
			VALUES ('activate', 'wr', 'wr.example.test.', 'A', '198.51.100.7', 0, 4, '{}', 1, 1, 2, '192.0.2.77', 1),
			       ('ttl', 'wr', 'wr.example.test.', 'A', '', 0, 0, '{}', 3, 0, 3, NULL, 0)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := sdb.Close(); err != nil {
		t.Fatal(err)
	}

	_, b := bustest.Embedded(t)
	h := &harness{t: t, b: b, data: data}
	h.collect()
	h.run(testConfig(t))
	u := h.waitUpdated(2)
	first := h.updated()[0]
	if first.Old != "192.0.2.77" || first.New != "198.51.100.7" || first.Epoch != 4 {
		t.Fatalf("first DNSRecordUpdated = %+v, want the queued activation with the old value it had read", first)
	}
	if u.New != "198.51.100.7" || u.TTL != 60 {
		t.Fatalf("second DNSRecordUpdated = %+v, want the TTL change after the switch", u)
	}
	testtool.WaitFor(t, 10*time.Second, func() error {
		if st := h.status(); st.Pending != 0 {
			return fmt.Errorf("%d changes pending", st.Pending)
		}
		return nil
	})
}
