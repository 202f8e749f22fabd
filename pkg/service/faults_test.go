package service_test

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"math/rand"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/service/servicetest"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/pkg/testtool"
)

var (
	faultSeed   = flag.Int64("seed", 0, "seed of TestRandomFaultsApplyEveryDecisionOnceEverywhere (0: from the clock)")
	faultRounds = flag.Int("fault-rounds", 40, "rounds of TestRandomFaultsApplyEveryDecisionOnceEverywhere")
)

// The fault service is the decider (its downs, verdicts, leader and
// reconcile) whose handlers also record each application of a decision in
// the replicated table applications, one row per application (a
// transition applied twice anywhere shows as two rows there), and, in
// host-local tables, every event applied after one later in the stream
// (the runtime applies in stream order, DESIGN §1; the inbox keeps a
// redelivered event from reaching a handler twice).
var faultMigrations = fstest.MapFS{
	"0001_init.sql": deciderMigrations["0001_init.sql"],
	"0002_faults.sql": {Data: []byte(`
		CREATE TABLE applications (host TEXT NOT NULL, n INTEGER NOT NULL, id TEXT NOT NULL);
		CREATE TABLE last_applied (one INTEGER PRIMARY KEY CHECK (one = 1), seq INTEGER NOT NULL);
		CREATE TABLE disorder (seq INTEGER NOT NULL, after INTEGER NOT NULL, id TEXT NOT NULL);`)},
}

func faultSpec(d *decider) service.Spec {
	spec := deciderSpec(d)
	spec.Migrations = faultMigrations
	spec.Replicated = append(spec.Replicated, "applications")
	spec.Subscriptions = []service.Subscription{
		service.On(func(ctx context.Context, tx *store.Tx, ev *events.HostDown, m service.Delivery) error {
			if err := inOrder(ctx, tx, m); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO downs (host, n) VALUES (?, 1) ON CONFLICT (host) DO UPDATE SET n = n + 1`, ev.Host)
			return err
		}),
		service.On(func(ctx context.Context, tx *store.Tx, ev *events.HostUp, m service.Delivery) error {
			if err := inOrder(ctx, tx, m); err != nil {
				return err
			}
			n, err := strconv.Atoi(strings.TrimPrefix(ev.Reason, "transition "))
			if err != nil {
				return nil
			}
			var cur int
			err = tx.QueryRowContext(ctx, `SELECT n FROM verdicts WHERE host = ?`, ev.Host).Scan(&cur)
			if err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			if cur != n-1 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO verdicts (host, n, id) VALUES (?, ?, ?) ON CONFLICT (host) DO UPDATE SET n = excluded.n, id = excluded.id`, ev.Host, n, m.ID); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO applications (host, n, id) VALUES (?, ?, ?)`, ev.Host, n, m.ID)
			return err
		}),
	}
	return spec
}

// inOrder records m in disorder when this database applied an event later
// in the stream before it.
func inOrder(ctx context.Context, tx *store.Tx, m service.Delivery) error {
	var last uint64
	err := tx.QueryRowContext(ctx, `SELECT seq FROM last_applied`).Scan(&last)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if m.StreamSeq < last {
		_, err := tx.ExecContext(ctx, `INSERT INTO disorder (seq, after, id) VALUES (?, ?, ?)`, m.StreamSeq, last, m.ID)
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO last_applied (one, seq) VALUES (1, ?) ON CONFLICT (one) DO UPDATE SET seq = excluded.seq`, m.StreamSeq)
	return err
}

// startDeciderIn is startDecider with the service's data in data (kept
// across a stop and a restart) and its spec made by spec.
// with, when set, changes its deps.
func startDeciderIn(t *testing.T, b *bus.Bus, host, data string, spec func(*decider) service.Spec, with func(*service.Deps)) *decider {
	t.Helper()
	d := &decider{}
	deps := servicetest.Deps(b, data)
	deps.Host = host
	deps.LeaseAllowance = 500 * time.Millisecond
	if with != nil {
		with(&deps)
	}
	d.rt, d.stop = servicetest.Start(t, spec(d), deps)
	return d
}

// faultHost is one host of the fault test: its own connection to the bus
// (closing it cuts the host off) and its data directory.
type faultHost struct {
	name, data string
	b          *bus.Bus
	d          *decider // nil while stopped
	// cut, when set, cuts the host off the bus after its next commit of
	// a batch, before the acks, and closes cutDone.
	cut     atomic.Bool
	cutDone chan struct{}
}

// faultCluster is three fault hosts on one embedded server, and a bus of
// the test's own for what outside publishers send.
type faultCluster struct {
	t     *testing.T
	seed  int64
	url   string
	b     *bus.Bus
	hosts []*faultHost
	want  map[string]int // HostDown events published, by host
}

func (c *faultCluster) start(h *faultHost) {
	c.t.Helper()
	b := bustest.Connect(c.t, 1, c.url)
	h.b = b
	h.d = startDeciderIn(c.t, b, h.name, h.data, faultSpec, func(deps *service.Deps) {
		deps.Logger = slog.Default().With(slog.String("host", h.name))
		deps.AfterCommit = func(string, []*bus.Delivery) {
			if h.cut.CompareAndSwap(true, false) {
				b.NC.Close()
				close(h.cutDone)
			}
		}
	})
}

// stop stops h cleanly: it releases the lease and flushes its outbox.
func (c *faultCluster) stop(h *faultHost) {
	h.d.stop()
	h.b.Close()
	h.d = nil
}

// kill cuts h off the bus first, as a dead process would be: its lease is
// not released but expires, acks and outbox publishes fail (what it
// committed but did not ack is redelivered when it comes back, what it
// decided but did not publish is published then, late), and only then
// does its runtime stop.
func (c *faultCluster) kill(h *faultHost) {
	h.b.NC.Close()
	h.d.stop()
	h.d = nil
}

func (c *faultCluster) running() []*faultHost {
	var out []*faultHost
	for _, h := range c.hosts {
		if h.d != nil {
			out = append(out, h)
		}
	}
	return out
}

func (c *faultCluster) stopped() []*faultHost {
	var out []*faultHost
	for _, h := range c.hosts {
		if h.d == nil {
			out = append(out, h)
		}
	}
	return out
}

func (c *faultCluster) leader() *faultHost {
	c.t.Helper()
	var ds []*decider
	for _, h := range c.running() {
		ds = append(ds, h.d)
	}
	l := leaderOf(c.t, ds...)
	for _, h := range c.hosts {
		if h.d == l {
			return h
		}
	}
	panic("the leader is none of the hosts")
}

func (c *faultCluster) stream() jetstream.Stream {
	c.t.Helper()
	s, err := c.b.JS.Stream(context.Background(), events.StreamEvents)
	if err != nil {
		c.t.Fatal(err)
	}
	return s
}

// applied is what h's database applied of the events stream.
func (c *faultCluster) applied(h *faultHost) uint64 {
	c.t.Helper()
	seq, err := h.d.rt.DB.Applied(context.Background(), events.StreamEvents)
	if err != nil {
		c.t.Fatal(err)
	}
	return seq
}

// waitApplied waits until every running host applied the stream as it
// stands now, and returns the least position among them.
func (c *faultCluster) waitApplied() uint64 {
	c.t.Helper()
	target := c.stream().CachedInfo().State.LastSeq
	var least uint64
	c.waitUntil(20*time.Second, func() error {
		least = 0
		var errs []error
		for i, h := range c.running() {
			seq := c.applied(h)
			if seq < target {
				errs = append(errs, fmt.Errorf("%s applied %d of the stream's %d", h.name, seq, target))
			}
			if i == 0 || seq < least {
				least = seq
			}
		}
		return errors.Join(errs...)
	})
	return least
}

// waitUntil waits for cond like testtool.WaitFor, but on timeout fails the
// test without stopping it, so that what follows says what diverged.
func (c *faultCluster) waitUntil(timeout time.Duration, cond func() error) (err error) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	testtool.WaitFor(c.t, timeout+10*time.Second, func() error {
		if err = cond(); err != nil && time.Now().After(deadline) {
			return nil
		}
		return err
	})
	if err != nil {
		c.t.Errorf("seed %d: not within %s: %v", c.seed, timeout, err)
	}
	return err
}

// waitDecided waits until every running host applied a verdict for every
// HostDown published and the whole stream.
func (c *faultCluster) waitDecided() {
	c.t.Helper()
	c.waitUntil(20*time.Second, func() error {
		last := c.stream().CachedInfo().State.LastSeq
		var errs []error
		for _, h := range c.running() {
			if v := verdictsOf(c.t, h.d); fmt.Sprint(v) != fmt.Sprint(c.want) {
				errs = append(errs, fmt.Errorf("%s has verdicts %v, want %v", h.name, v, c.want))
			}
			if seq := c.applied(h); seq < last {
				errs = append(errs, fmt.Errorf("%s applied %d of the stream's %d", h.name, seq, last))
			}
		}
		return errors.Join(errs...)
	})
}

// converged says how the hosts differ from where they must end: nothing
// left to publish, the whole stream applied, every transition answered,
// the same digest everywhere.
func (c *faultCluster) converged() error {
	ctx := context.Background()
	var errs []error
	last := c.stream().CachedInfo().State.LastSeq
	digests := map[string][]string{}
	for _, h := range c.hosts {
		if n, err := h.d.rt.DB.Pending(ctx); err != nil || n > 0 {
			errs = append(errs, fmt.Errorf("%s's outbox holds %d (%v)", h.name, n, err))
		}
		got, err := h.d.rt.Digest(ctx)
		if err != nil {
			return err
		}
		if got.Applied != last {
			errs = append(errs, fmt.Errorf("%s applied %d of the stream's %d", h.name, got.Applied, last))
		}
		if v := verdictsOf(c.t, h.d); fmt.Sprint(v) != fmt.Sprint(c.want) {
			errs = append(errs, fmt.Errorf("%s has verdicts %v, want %v (the HostDown events)", h.name, v, c.want))
		}
		digests[got.SHA256] = append(digests[got.SHA256], h.name)
	}
	if len(digests) > 1 {
		errs = append(errs, fmt.Errorf("the digests differ: %v", digests))
	}
	return errors.Join(errs...)
}

func (c *faultCluster) publishDowns(rng *rand.Rand, hosts []string, most int) []string {
	c.t.Helper()
	var out []string
	for range rng.Intn(most + 1) {
		h := hosts[rng.Intn(len(hosts))]
		publishDowns(c.t, c.b, h)
		c.want[h]++
		out = append(out, h)
	}
	return out
}

// A fault is one of the test's injections and when it may be injected.
type fault struct {
	name string
	may  func(c *faultCluster) bool
	do   func(c *faultCluster, rng *rand.Rand) string
}

var faults = []fault{
	{"stop the leader", allRunning, func(c *faultCluster, _ *rand.Rand) string {
		l := c.leader()
		epoch, _ := l.d.rt.Leading()
		c.stop(l)
		return fmt.Sprintf("%s at epoch %d", l.name, epoch)
	}},
	{"kill the leader", allRunning, func(c *faultCluster, _ *rand.Rand) string {
		l := c.leader()
		epoch, _ := l.d.rt.Leading()
		c.kill(l)
		return fmt.Sprintf("%s at epoch %d", l.name, epoch)
	}},
	{"kill the leader between a commit and its acks", allRunning, func(c *faultCluster, _ *rand.Rand) string {
		l := c.leader()
		epoch, _ := l.d.rt.Leading()
		l.cutDone = make(chan struct{})
		l.cut.Store(true)
		publishDowns(c.t, c.b, "k")
		c.want["k"]++
		select {
		case <-l.cutDone:
		case <-time.After(10 * time.Second):
			c.t.Fatalf("seed %d: %s committed no batch in 10s", c.seed, l.name)
		}
		l.d.stop()
		l.d = nil
		return fmt.Sprintf("%s at epoch %d", l.name, epoch)
	}},
	{"restart a stopped host", oneStopped, func(c *faultCluster, _ *rand.Rand) string {
		h := c.stopped()[0]
		c.start(h)
		st, err := h.d.rt.CurrentStatus(context.Background())
		if err != nil {
			c.t.Fatal(err)
		}
		if st.Rebuilt != "" {
			return h.name + ", " + st.Rebuilt
		}
		return fmt.Sprintf("%s, at %d", h.name, st.Applied)
	}},
	{"lose a stopped host's database", oneStopped, func(c *faultCluster, _ *rand.Rand) string {
		h := c.stopped()[0]
		if err := removeDB(h.data); err != nil {
			c.t.Fatal(err)
		}
		return h.name
	}},
	{"purge the stream's head past a stopped host", oneStopped, func(c *faultCluster, rng *rand.Rand) string {
		// Events the stopped host never applied, then gone from the
		// stream: only those every running host applied.
		publishDowns(c.t, c.b, "p")
		c.want["p"]++
		least := c.waitApplied()
		if err := c.stream().Purge(context.Background(), jetstream.WithPurgeSequence(least+1)); err != nil {
			c.t.Fatal(err)
		}
		return fmt.Sprintf("%s, through %d", c.stopped()[0].name, least)
	}},
	{"a deposed leader's decision", always, func(c *faultCluster, rng *rand.Rand) string {
		// Below the highest epoch a host applied, which every host
		// applied before this message in stream order, for the next
		// transition of a host the state would admit it for.
		r := c.running()[0]
		epoch, err := r.d.rt.DB.LeaderEpoch(context.Background(), "leader/job-tracker")
		if err != nil {
			c.t.Fatal(err)
		}
		if epoch == 0 {
			return "none: no decision applied yet"
		}
		verdicts := verdictsOf(c.t, r.d)
		host := string(rune('a' + rng.Intn(4)))
		downs := countsOf(c.t, r.d, "downs")
		for _, h := range slices.Sorted(maps.Keys(downs)) {
			if downs[h] > verdicts[h] {
				host = h
				break
			}
		}
		n := verdicts[host] + 1
		id := fmt.Sprintf("deposed-%d", rng.Int63())
		h := cloudHeader(id, "io.lifeboat.host.up.v1")
		h.Set(service.HeaderLeader, "leader/job-tracker")
		h.Set(service.HeaderEpoch, strconv.FormatUint(epoch-1, 10))
		c.publishRaw(&nats.Msg{Subject: events.SubjectOf[events.HostUp](), Header: h, Data: fmt.Appendf(nil, `{"host":%q,"reason":"transition %d"}`, host, n)})
		return fmt.Sprintf("host %s transition %d epoch %d", host, n, epoch-1)
	}},
	{"a relay held back past the duplicate window", always, func(c *faultCluster, rng *rand.Rand) string {
		// A decision every running host applied, sent again with a new
		// Nats-Msg-Id (the window is over), under its own id or, as a
		// host whose inbox lacks it would see it, another one.
		least := c.waitApplied()
		s := c.stream()
		first := s.CachedInfo().State.FirstSeq
		if least < first {
			return "none: nothing applied in the stream"
		}
		for range 32 {
			seq := first + uint64(rng.Int63n(int64(least-first+1)))
			m, err := s.GetMsg(context.Background(), seq)
			if err != nil || m.Subject != events.SubjectOf[events.HostUp]() {
				continue
			}
			h := nats.Header{}
			for k, v := range m.Header {
				h[k] = slices.Clone(v)
			}
			h.Set(bus.HeaderMsgID, fmt.Sprintf("relayed-%d", rng.Int63()))
			how := "its own id"
			if rng.Intn(2) == 0 {
				h.Set(bus.HeaderID, h.Get(bus.HeaderMsgID))
				how = "a new id"
			}
			c.publishRaw(&nats.Msg{Subject: m.Subject, Header: h, Data: m.Data})
			return fmt.Sprintf("seq %d %s (%s, epoch %s) under %s", seq, m.Data, m.Header.Get(service.HeaderLeader), m.Header.Get(service.HeaderEpoch), how)
		}
		return "none: no decision found in the stream"
	}},
}

func always(*faultCluster) bool       { return true }
func allRunning(c *faultCluster) bool { return len(c.stopped()) == 0 }
func oneStopped(c *faultCluster) bool { return len(c.stopped()) == 1 }

func (c *faultCluster) publishRaw(m *nats.Msg) {
	c.t.Helper()
	if _, err := c.b.JS.PublishMsg(context.Background(), m); err != nil {
		c.t.Fatal(err)
	}
}

// disorderOf lists the events d applied after one later in the stream.
func disorderOf(t *testing.T, d *decider) []string {
	t.Helper()
	rows, err := d.rt.DB.R.Query(`SELECT seq, after, id FROM disorder ORDER BY rowid`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var seq, after uint64
		var id string
		if err := rows.Scan(&seq, &after, &id); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("seq %d (%s) after seq %d", seq, id, after))
	}
	return out
}

// TestRandomFaultsApplyEveryDecisionOnceEverywhere runs three decider
// hosts through random rounds of HostDown events and one fault each
// (the leader stopped or killed, a host restarted, its database lost,
// the stream's head purged past it, a deposed leader's decision, a
// decision relayed again past the duplicate window), keeping two hosts up
// at all times; once every host is back, each must have applied every
// host's transitions 1..n exactly once, and their digests must agree.
// Replay a failure with -seed.
func TestRandomFaultsApplyEveryDecisionOnceEverywhere(t *testing.T) {
	seed := *faultSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay with -seed %d)", seed, seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("failed with seed %d: replay with -run RandomFaults -seed %d", seed, seed)
		}
	})
	rng := rand.New(rand.NewSource(seed))
	ns, b := bustest.Embedded(t)
	c := &faultCluster{t: t, seed: seed, url: ns.ClientURL(), b: b, want: map[string]int{}}
	for i := range 3 {
		h := &faultHost{name: fmt.Sprintf("h%d", i+1), data: t.TempDir()}
		c.hosts = append(c.hosts, h)
		c.start(h)
	}
	subjects := []string{"a", "b", "c", "d"}
	start := time.Now()
	for round := 1; round <= *faultRounds; round++ {
		downs := c.publishDowns(rng, subjects, 3)
		var can []fault
		for _, f := range faults {
			if f.may(c) {
				can = append(can, f)
			}
		}
		f := can[rng.Intn(len(can))]
		what := f.do(c, rng)
		t.Logf("round %d (%s): HostDown %v; %s: %s", round, time.Since(start).Round(time.Millisecond), downs, f.name, what)
		// The next fault lands mid-flight, once the running hosts
		// applied what the stream holds, or once they also answered
		// every HostDown (after a kill, when the lease has expired and
		// another host took it).
		switch rng.Intn(3) {
		case 1:
			c.waitApplied()
		case 2:
			c.waitDecided()
		}
	}
	for _, h := range c.stopped() {
		c.start(h)
	}
	t.Logf("every host back after %s; HostDown events published: %v", time.Since(start).Round(time.Millisecond), c.want)

	c.waitUntil(30*time.Second, c.converged)
	for _, h := range c.hosts {
		if got := countsOf(t, h.d, "downs"); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("seed %d: %s counted HostDown events %v, want %v", seed, h.name, got, c.want)
		}
		if out := disorderOf(t, h.d); len(out) > 0 {
			t.Errorf("seed %d: %s applied events out of stream order: %s", seed, h.name, strings.Join(out, "; "))
		}
		applied := map[string]map[int][]string{}
		rows, err := h.d.rt.DB.R.Query(`SELECT host, n, id FROM applications ORDER BY rowid`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var host, id string
			var n int
			if err := rows.Scan(&host, &n, &id); err != nil {
				t.Fatal(err)
			}
			if applied[host] == nil {
				applied[host] = map[int][]string{}
			}
			applied[host][n] = append(applied[host][n], id)
		}
		rows.Close()
		for host := range applied {
			if _, ok := c.want[host]; !ok {
				t.Errorf("seed %d: %s applied transitions of host %s, which never went down: %v", seed, h.name, host, applied[host])
			}
		}
		for host, want := range c.want {
			for n := 1; n <= want; n++ {
				if ids := applied[host][n]; len(ids) != 1 {
					t.Errorf("seed %d: %s applied host %s's transition %d %d times (decisions %v), want once", seed, h.name, host, n, len(ids), ids)
				}
			}
			for n, ids := range applied[host] {
				if n < 1 || n > want {
					t.Errorf("seed %d: %s applied host %s's transition %d (decisions %v), beyond its %d HostDown events", seed, h.name, host, n, ids, want)
				}
			}
		}
	}
}
