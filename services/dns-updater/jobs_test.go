package dnsupdater

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/miekg/dns"

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
// It leads, alone: the verification of an embedded change asks this
// host's server only.
type direct struct {
	t   *testing.T
	s   *Service
	db  *store.DB
	srv *embedded.Server
	// seq is the stream sequence of the last message handled.
	seq uint64
	// delivered is the outbox position up to which outcomes were
	// delivered back to the handlers.
	delivered int64
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
	d := &direct{t: t, s: s, db: sdb}
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
		s.p, s.emb, d.srv = srv, srv, srv
	}
	return d
}

// external makes the service use its embedded server as an external
// provider would be used: the leader's job sets and verifies each change,
// and no handler touches the zone.
func (d *direct) external() { d.s.emb = nil }

// handle applies ev with h in a transaction of its own, as message id
// (the next in the stream), and returns the delivery it made up.
func handle[T any](d *direct, h func(context.Context, *store.Tx, *T, service.Delivery) error, ev *T, id string) service.Delivery {
	d.t.Helper()
	return handleWith(d, h, ev, id, nil)
}

func handleWith[T any](d *direct, h func(context.Context, *store.Tx, *T, service.Delivery) error, ev *T, id string, header map[string][]string) service.Delivery {
	d.t.Helper()
	d.seq++
	m := service.Delivery{ID: id, Subject: events.SubjectOf[T](), StreamSeq: d.seq, Delivered: 1, Timestamp: time.Now(), Header: header}
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
	var open int
	if err := d.db.R.QueryRowContext(d.t.Context(), `SELECT COUNT(*) FROM dns_jobs WHERE done = 0`).Scan(&open); err != nil || open != len(out) {
		d.t.Fatalf("%d dns_jobs rows not done (%v) for %d queued jobs", open, err, len(out))
	}
	return out
}

// pending returns the pending changes, in order.
func (d *direct) pending() []db.DnsPending {
	d.t.Helper()
	ps, err := db.New(d.db.R).ListPending(d.t.Context())
	if err != nil {
		d.t.Fatal(err)
	}
	return ps
}

// outboxRow is an event waiting in the outbox.
type outboxRow struct {
	seq    int64
	id     string
	header map[string][]string
	ev     any
}

func (d *direct) outboxRows() []outboxRow {
	d.t.Helper()
	rows, err := d.db.R.QueryContext(d.t.Context(), `SELECT seq, id, subject, headers, body FROM outbox ORDER BY seq`)
	if err != nil {
		d.t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		var subject, headers string
		var body []byte
		if err := rows.Scan(&r.seq, &r.id, &subject, &headers, &body); err != nil {
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
		if err := json.Unmarshal([]byte(headers), &r.header); err != nil {
			d.t.Fatal(err)
		}
		r.ev = v
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		d.t.Fatal(err)
	}
	return out
}

// outbox returns the events waiting in the outbox, decoded, oldest first.
func (d *direct) outbox() []any {
	d.t.Helper()
	var out []any
	for _, r := range d.outboxRows() {
		out = append(out, r.ev)
	}
	return out
}

// deliver applies the outcomes emitted since the last delivery, as every
// host does when it consumes them.
func (d *direct) deliver() {
	d.t.Helper()
	for _, r := range d.outboxRows() {
		if r.seq <= d.delivered {
			continue
		}
		d.delivered = r.seq
		switch ev := r.ev.(type) {
		case *events.DNSRecordUpdated:
			handleWith(d, d.s.handleDNSRecordUpdated, ev, r.id, r.header)
		case *events.DNSUpdateFailed:
			handleWith(d, d.s.handleDNSUpdateFailed, ev, r.id, r.header)
		}
	}
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
	finish, err := d.s.applyChange(d.t.Context(), service.Job{ID: j.ID, Kind: j.Kind, Key: j.Key, Attempt: attempt, Enqueued: time.Now()}, &j.payload)
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

// history returns the history, oldest first.
func (d *direct) history() []db.DnsHistory {
	d.t.Helper()
	h, err := db.New(d.db.R).ListHistory(d.t.Context(), 100)
	if err != nil {
		d.t.Fatal(err)
	}
	slices.Reverse(h)
	return h
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
	// Not newer than the epoch applied: ignored.
	handle(d, s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.8", Epoch: 3}, "a3-again")
	handle(d, s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.2", Epoch: 2}, "a2")
	// A drill switches nothing.
	handle(d, s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.9", Epoch: 9, Drill: true}, "drill")
	set := handle(d, s.handleDNSSet, &events.DNSSet{Name: "WEB.example.test", Address: "2001:db8::7", TTL: 30}, "cmd-1")
	handle(d, s.handleFailoverStarted, &events.FailoverStarted{Instance: "wr", To: "cold-1", Epoch: 4}, "fs4")

	js := d.jobs()
	got := make([]string, len(js))
	for i, j := range js {
		got[i] = fmt.Sprintf("%s %s %s %s %+v", j.ID, j.Kind, j.Key, j.Owner, j.payload)
	}
	// The activation and the TTL change are applied to the zone (the TTL
	// change keeps the value the activation set) and pending on every
	// host; the set by hand is the leader's alone.
	want := []string{
		"change:a3 change wr.example.test. leader:dns-updater {Kind:activate Instance:wr Name:wr.example.test. Type:A Value:198.51.100.7 TTL:60 Epoch:3 RequestID: After:0}",
		"change:cmd-1 change web.example.test. leader:dns-updater {Kind:set Instance:web Name:web.example.test. Type:AAAA Value:2001:db8::7 TTL:30 Epoch:0 RequestID:" + set.ID + " After:0}",
		"change:fs4 change wr.example.test. leader:dns-updater {Kind:ttl Instance:wr Name:wr.example.test. Type:A Value:198.51.100.7 TTL:5 Epoch:0 RequestID: After:0}",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("queued:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if r := js[0].row; r.Kind != kindActivate || r.Instance != "wr" || r.Epoch != 3 || r.Old.Valid || r.Applied != 0 {
		t.Fatalf("dns_jobs row of the activation = %+v", r)
	}
	var ps []string
	for _, p := range d.pending() {
		ps = append(ps, fmt.Sprintf("%s %s %s old=%s zoned=%d ttl=%d", p.ID, p.Kind, p.Value, p.Old.String, p.Zoned, p.Ttl))
	}
	if want := []string{"change:a3 activate 198.51.100.7 old=192.0.2.1 zoned=1 ttl=60", "change:fs4 ttl 198.51.100.7 old=198.51.100.7 zoned=1 ttl=5"}; !slices.Equal(ps, want) {
		t.Fatalf("pending:\n%s\nwant:\n%s", strings.Join(ps, "\n"), strings.Join(want, "\n"))
	}
	expectServed(t, d.srv.Addr(), wr, "198.51.100.7")
	if _, ttl := answerA(query(t, d.srv.Addr(), "udp", wr, dns.TypeA)); ttl != 5 {
		t.Fatalf("wr is served with TTL %d, want the lowered 5", ttl)
	}
	if e, err := db.New(d.db.R).GetEpoch(t.Context(), "wr"); err != nil || e.Epoch != 3 {
		t.Fatalf("epoch %+v (%v), want 3 applied with the zone", e, err)
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

// TestEmbeddedChangeIsVerifiedThenRecorded: an activation is applied to
// the zone (history and epoch with it, not verified yet); the leader's job
// verifies that the server answers it and decides DNSRecordUpdated with
// the values before; applying that outcome records the verification and
// forgets the change, once.
func TestEmbeddedChangeIsVerifiedThenRecorded(t *testing.T) {
	d := openDirect(t, testConfig(t))
	handle(d, d.s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.7", Epoch: 1}, "a1")
	if h := d.history(); len(h) != 1 || h[0].VerifiedAfterMs != -1 || h[0].Job != "change:a1" || h[0].Old != "192.0.2.1" {
		t.Fatalf("history after the activation = %+v, want it applied, not verified", h)
	}
	if err := d.work(1); err != nil {
		t.Fatal(err)
	}
	rows := d.outboxRows()
	if len(rows) != 1 {
		t.Fatalf("outbox %+v", rows)
	}
	u, ok := rows[0].ev.(*events.DNSRecordUpdated)
	if !ok || u.Old != "192.0.2.1" || u.New != "198.51.100.7" || u.TTL != 60 || u.Epoch != 1 || u.VerifiedAfter < 1 || u.Provider != "embedded" {
		t.Fatalf("outcome %+v", rows[0].ev)
	}
	if got := rows[0].header[headerChange]; !slices.Equal(got, []string{"change:a1"}) {
		t.Fatalf("outcome names change %v", got)
	}
	d.deliver()
	// The same outcome again (decided twice around a takeover): nothing
	// more.
	handleWith(d, d.s.handleDNSRecordUpdated, u, "twice", rows[0].header)
	h := d.history()
	if len(h) != 1 || h[0].VerifiedAfterMs < 1 {
		t.Fatalf("history = %+v, want one verified change", h)
	}
	if p := d.pending(); len(p) != 0 {
		t.Fatalf("pending after the outcome: %+v", p)
	}
	if js := d.jobs(); len(js) != 0 {
		t.Fatalf("jobs after the outcome: %+v", js)
	}
}

// TestWorkerKeepsTheOldValueAcrossACrash: with an external provider the
// worker reads the old value once and commits it before the first Set; an
// attempt after a crash between the Set and the outcome reports it, though
// the name already holds the new value.
func TestWorkerKeepsTheOldValueAcrossACrash(t *testing.T) {
	d := openDirect(t, testConfig(t))
	d.external()
	crash := errors.New("simulated crash after the Set")
	d.s.afterSet = func(context.Context) error { return crash }
	handle(d, d.s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.7", Epoch: 1}, "a1")
	if got, err := d.s.p.Get(t.Context(), wr, "A"); err != nil || got[0].Value != "192.0.2.1" {
		t.Fatalf("the name holds %v (%v) before the job runs; no handler changes an external provider", got, err)
	}
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
	// The epoch and the history follow from the outcome, on every host.
	if _, err := db.New(d.db.R).GetEpoch(t.Context(), "wr"); !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("epoch recorded before the outcome is applied (%v)", err)
	}
	d.deliver()
	if e, err := db.New(d.db.R).GetEpoch(t.Context(), "wr"); err != nil || e.Epoch != 1 || e.Address != "198.51.100.7" {
		t.Fatalf("epoch %+v (%v)", e, err)
	}
	if h := d.history(); len(h) != 1 || h[0].Old != "192.0.2.1" || h[0].VerifiedAfterMs < 1 {
		t.Fatalf("history %+v", h)
	}
	if n := len(d.jobs()); n != 0 {
		t.Fatalf("%d jobs after the outcome", n)
	}
}

// TestNewerActivationSupersedesAQueuedOne: of two activations queued for
// one instance the older is forgotten by every host when the newer is
// applied; once the newer is applied, an older or equal epoch is stale.
func TestNewerActivationSupersedesAQueuedOne(t *testing.T) {
	d := openDirect(t, testConfig(t))
	d.external()
	s := d.s
	handle(d, s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.1", Epoch: 1}, "a1")
	handle(d, s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.2", Epoch: 2}, "a2")
	if js := d.jobs(); len(js) != 1 || js[0].ID != "change:a2" {
		t.Fatalf("jobs %+v, want only the newer activation's", js)
	}
	if p := d.pending(); len(p) != 1 || p[0].ID != "change:a2" {
		t.Fatalf("pending %+v, want only the newer activation", p)
	}
	if err := d.work(1); err != nil {
		t.Fatal(err)
	}
	d.deliver()
	handle(d, s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.3", Epoch: 2}, "a2-again")
	handle(d, s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.3", Epoch: 1}, "a1-late")
	if js := d.jobs(); len(js) != 0 {
		t.Fatalf("stale activations queued %+v", js)
	}
	if got, _ := s.p.Get(t.Context(), wr, "A"); got[0].Value != "198.51.100.2" {
		t.Fatalf("the name holds %v, want epoch 2's address", got)
	}
	var updated int
	for _, ev := range d.outbox() {
		if _, ok := ev.(*events.DNSRecordUpdated); ok {
			updated++
		}
	}
	if updated != 1 {
		t.Fatalf("%d DNSRecordUpdated, want the newer activation's alone", updated)
	}
}

// TestWorkerRetriesATemporaryFailureThenGivesUp: a failure that may pass
// is returned to the queue until dns.retry.attempts, then the job ends
// with DNSUpdateFailed and its reason; the provider holds the change
// though it was never verified, which the outcome says, so every host
// records it in the history as not verified.
func TestWorkerRetriesATemporaryFailureThenGivesUp(t *testing.T) {
	cfg := testConfig(t)
	cfg.Verify.Timeout = 50 * time.Millisecond
	d := openDirect(t, cfg)
	d.external()
	// The change is accepted but never answered: not verified.
	d.s.p = lagging{d.s.p}
	handle(d, d.s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.7", Epoch: 1}, "a1")
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
	if !ok || f.Attempts != cfg.Retry.Attempts || f.Reason == "" || f.Epoch != 1 || !strings.Contains(f.Error, fmt.Sprintf("gave up after %d attempts", cfg.Retry.Attempts)) {
		t.Fatalf("outcome %+v, want DNSUpdateFailed after %d attempts with a reason", out[0], cfg.Retry.Attempts)
	}
	d.deliver()
	// The name was set but never verified: the history says so.
	hist, err := db.New(d.db.R).ListHistory(t.Context(), 10)
	if err != nil || len(hist) != 1 || hist[0].VerifiedAfterMs != -1 || hist[0].Old != "192.0.2.1" || hist[0].Kind != kindActivate {
		t.Fatalf("history %+v (%v), want one unverified change from 192.0.2.1", hist, err)
	}
	if p := d.pending(); len(p) != 0 {
		t.Fatalf("pending after the outcome: %+v", p)
	}
}

// TestReconcileQueuesWhatIsPendingWithoutAJob: a host whose replicated
// state came from a peer's snapshot holds the peer's pending changes but
// its own, empty, work queue; leading, it queues them again, in order, and
// queues nothing twice.
func TestReconcileQueuesWhatIsPendingWithoutAJob(t *testing.T) {
	d := openDirect(t, testConfig(t))
	handle(d, d.s.handleInstanceActivated, &events.InstanceActivated{Instance: "wr", To: "cold-1", Address: "198.51.100.7", Epoch: 1}, "a1")
	handle(d, d.s.handleInstanceActivated, &events.InstanceActivated{Instance: "web", To: "cold-1", Address: "2001:db8::7", Epoch: 1}, "w1")
	// The work queue and dns_jobs are this host's own: a snapshot does not
	// carry them.
	if err := d.db.Update(t.Context(), func(tx *store.Tx) error {
		_, err := tx.ExecContext(t.Context(), `DELETE FROM work; DELETE FROM dns_jobs;`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := d.s.reconcile(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
	}
	js := d.jobs()
	if len(js) != 2 || js[0].ID != "change:a1" || js[1].ID != "change:w1" || js[0].Owner != "leader:dns-updater" || js[0].payload.Value != "198.51.100.7" {
		t.Fatalf("jobs after reconciling: %+v", js)
	}
	if err := d.work(1); err != nil {
		t.Fatal(err)
	}
	if out := d.outbox(); len(out) != 1 {
		t.Fatalf("outbox %+v, want the change verified", out)
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
			       ('ttl', 'wr', 'wr.example.test.', 'A', '', 0, 0, '{}', 3, 0, 3, NULL, 0),
			       ('set', 'web', 'web.example.test.', 'AAAA', '2001:db8::9', 0, 0, '{}', ?, 0, 4, NULL, 0)`, time.Now().UnixMilli())
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
	h.waitUpdated(3)
	// The changes of one name in the order queued; the other name's
	// beside them.
	var ofWR, ofWeb []events.DNSRecordUpdated
	for _, u := range h.updated() {
		if u.Name == wr {
			ofWR = append(ofWR, u)
		} else {
			ofWeb = append(ofWeb, u)
		}
	}
	if len(ofWR) != 2 || ofWR[0].Old != "192.0.2.77" || ofWR[0].New != "198.51.100.7" || ofWR[0].Epoch != 4 {
		t.Fatalf("DNSRecordUpdated of wr = %+v, want first the queued activation with the old value it had read", ofWR)
	}
	if u := ofWR[1]; u.New != "198.51.100.7" || u.TTL != 60 {
		t.Fatalf("second DNSRecordUpdated of wr = %+v, want the TTL change after the switch", u)
	}
	if len(ofWeb) != 1 || ofWeb[0].New != "2001:db8::9" {
		t.Fatalf("DNSRecordUpdated of web = %+v, want the queued set by hand", ofWeb)
	}
	expectServedType(t, h.svc.emb.Addr(), "web.example.test.", dns.TypeAAAA, "2001:db8::9")
	if hist := h.history("web.example.test."); len(hist) != 1 || hist[0].Kind != kindSet {
		t.Fatalf("history of web = %+v, want the set", hist)
	}
	testtool.WaitFor(t, 10*time.Second, func() error {
		if st := h.status(); st.Pending != 0 {
			return fmt.Errorf("%d changes pending", st.Pending)
		}
		return nil
	})
}
