package service_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/service/servicetest"
	"lifeboat.dev/pkg/store"
)

// The decider service: every host counts each host's HostDown events
// (downs); its leader decides, for the next count not yet answered, a
// HostUp whose reason names the count it answers ("transition n"), and every host
// applies a verdict only while it answers the next count (a compare-and-set
// on the replicated verdicts), so a decision taken twice applies once.
var deciderMigrations = fstest.MapFS{
	"0001_init.sql": {Data: []byte(`
		CREATE TABLE downs (host TEXT PRIMARY KEY, n INTEGER NOT NULL);
		CREATE TABLE verdicts (host TEXT PRIMARY KEY, n INTEGER NOT NULL, id TEXT NOT NULL);`)},
}

type decider struct {
	rt   *service.Runtime
	stop func()
}

func deciderSpec(d *decider) service.Spec {
	return service.Spec{
		Name:       "job-tracker",
		Migrations: deciderMigrations,
		Replicated: []string{"downs", "verdicts"},
		Leader: &service.Leader{TTL: 2 * time.Second, Every: time.Hour, Reconcile: func(ctx context.Context, epoch uint64) error {
			return d.rt.DB.Update(ctx, func(tx *store.Tx) error {
				rows, err := tx.QueryContext(ctx, `SELECT d.host, COALESCE(v.n, 0) + 1 FROM downs d LEFT JOIN verdicts v USING (host) WHERE d.n > COALESCE(v.n, 0) ORDER BY d.host`)
				if err != nil {
					return err
				}
				type due struct {
					host string
					n    int
				}
				var dues []due
				for rows.Next() {
					var x due
					if err := rows.Scan(&x.host, &x.n); err != nil {
						rows.Close()
						return err
					}
					dues = append(dues, x)
				}
				rows.Close()
				for _, x := range dues {
					key := fmt.Sprintf("host %s transition %d", x.host, x.n)
					if _, err := d.rt.Decide(ctx, tx, epoch, key, &events.HostUp{Host: x.host, Reason: "transition " + strconv.Itoa(x.n)}); err != nil {
						return err
					}
				}
				return nil
			})
		}},
		Subscriptions: []service.Subscription{
			service.On(func(ctx context.Context, tx *store.Tx, ev *events.HostDown, m service.Delivery) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO downs (host, n) VALUES (?, 1) ON CONFLICT (host) DO UPDATE SET n = n + 1`, ev.Host)
				return err
			}),
			service.On(func(ctx context.Context, tx *store.Tx, ev *events.HostUp, m service.Delivery) error {
				n, err := strconv.Atoi(strings.TrimPrefix(ev.Reason, "transition "))
				if err != nil {
					return nil // not a decision of this service
				}
				var cur int
				err = tx.QueryRowContext(ctx, `SELECT n FROM verdicts WHERE host = ?`, ev.Host).Scan(&cur)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return err
				}
				if cur != n-1 {
					return nil // the state the decision was made from no longer holds
				}
				_, err = tx.ExecContext(ctx, `INSERT INTO verdicts (host, n, id) VALUES (?, ?, ?) ON CONFLICT (host) DO UPDATE SET n = excluded.n, id = excluded.id`, ev.Host, n, m.ID)
				return err
			}),
		},
	}
}

func startDecider(t *testing.T, b *bus.Bus, host string) *decider {
	t.Helper()
	d := &decider{}
	deps := servicetest.Deps(b, t.TempDir())
	deps.Host = host
	deps.LeaseAllowance = 500 * time.Millisecond
	d.rt, d.stop = servicetest.Start(t, deciderSpec(d), deps)
	return d
}

// leaderOf waits until exactly one of ds leads and returns it.
func leaderOf(t *testing.T, ds ...*decider) *decider {
	t.Helper()
	var leader *decider
	bustest.WaitFor(t, 20*time.Second, 0, func() error {
		leader = nil
		for _, d := range ds {
			if _, ok := d.rt.Leading(); ok {
				if leader != nil {
					return fmt.Errorf("both %s and %s lead", leader.rt.Deps.Host, d.rt.Deps.Host)
				}
				leader = d
			}
		}
		if leader == nil {
			return errors.New("nobody leads")
		}
		return nil
	})
	return leader
}

// countsOf reads a table of (host, n) of a decider.
func countsOf(t *testing.T, d *decider, table string) map[string]int {
	t.Helper()
	rows, err := d.rt.DB.R.Query(`SELECT host, n FROM ` + table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var h string
		var n int
		if err := rows.Scan(&h, &n); err != nil {
			t.Fatal(err)
		}
		out[h] = n
	}
	return out
}

// verdictsOf reads a decider's verdicts: host → the count answered.
func verdictsOf(t *testing.T, d *decider) map[string]int {
	t.Helper()
	return countsOf(t, d, "verdicts")
}

func waitVerdicts(t *testing.T, want map[string]int, ds ...*decider) {
	t.Helper()
	bustest.WaitFor(t, 20*time.Second, 0, func() error {
		for _, d := range ds {
			got := verdictsOf(t, d)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				return fmt.Errorf("%s has verdicts %v, want %v", d.rt.Deps.Host, got, want)
			}
		}
		return nil
	})
}

func TestTheLeaderDecidesOnceAndEveryHostApplies(t *testing.T) {
	_, b := bustest.Embedded(t)
	h1, h2 := startDecider(t, b, "h1"), startDecider(t, b, "h2")
	leader := leaderOf(t, h1, h2)
	publishDowns(t, b, "a", "b", "a")
	waitVerdicts(t, map[string]int{"a": 2, "b": 1}, h1, h2)
	st, err := h2.rt.CurrentStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	epoch, _ := leader.rt.Leading()
	if st.Leader == nil || st.Leader.Host != leader.rt.Deps.Host || st.Leader.Epoch != epoch {
		t.Fatalf("h2's status shows leader %+v, want %s at epoch %d", st.Leader, leader.rt.Deps.Host, epoch)
	}
	if lst, err := leader.rt.CurrentStatus(context.Background()); err != nil || lst.Leader == nil || !lst.Leader.Self || lst.Leader.ReconciledAt == nil {
		t.Fatalf("the leader's own status shows %+v (%v), want itself, having reconciled", lst.Leader, err)
	}

	// The leader goes; the other host takes over and decides what is
	// still due.
	other := h1
	if leader == h1 {
		other = h2
	}
	leader.stop()
	if leaderOf(t, other) != other {
		t.Fatal("the survivor does not lead")
	}
	newEpoch, _ := other.rt.Leading()
	if newEpoch <= epoch {
		t.Fatalf("the new leader's epoch %d is not above the old one's %d", newEpoch, epoch)
	}
	publishDowns(t, b, "b")
	waitVerdicts(t, map[string]int{"a": 2, "b": 2}, other)
}

func TestADecisionTakenTwiceOrByADeposedLeaderAppliesOnce(t *testing.T) {
	_, b := bustest.Embedded(t)
	h1, h2 := startDecider(t, b, "h1"), startDecider(t, b, "h2")
	leader := leaderOf(t, h1, h2)
	epoch, _ := leader.rt.Leading()
	publishDowns(t, b, "a")
	waitVerdicts(t, map[string]int{"a": 1}, h1, h2)

	decision := func(n int, epoch uint64, id string) *nats.Msg {
		body := fmt.Sprintf(`{"host":"a","reason":"transition %d"}`, n)
		h := cloudHeader(id, "io.lifeboat.host.up.v1")
		h.Set(service.HeaderLeader, "leader/job-tracker")
		h.Set(service.HeaderEpoch, strconv.FormatUint(epoch, 10))
		return &nats.Msg{Subject: events.SubjectOf[events.HostUp](), Header: h, Data: []byte(body)}
	}
	ctx := context.Background()
	// The same decision again (taken twice around a takeover, or
	// relayed twice past the duplicate window): the state it names no
	// longer holds; dropped.
	if _, err := b.JS.PublishMsg(ctx, decision(1, epoch, "again")); err != nil {
		t.Fatal(err)
	}
	// A deposed leader's late decision (epoch below one applied) for the
	// next transition, which the state would admit: dropped by the fence.
	if _, err := b.JS.PublishMsg(ctx, decision(2, epoch-1, "late")); err != nil {
		t.Fatal(err)
	}
	// A later, valid decision still applies.
	publishDowns(t, b, "a")
	waitVerdicts(t, map[string]int{"a": 2}, h1, h2)
	for _, d := range []*decider{h1, h2} {
		var id string
		if err := d.rt.DB.R.QueryRow(`SELECT id FROM verdicts WHERE host = 'a'`).Scan(&id); err != nil {
			t.Fatal(err)
		}
		if id == "late" {
			t.Fatalf("%s applied the deposed leader's decision", d.rt.Deps.Host)
		}
	}
	d1, err := h1.rt.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := h2.rt.Digest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d1.SHA256 != d2.SHA256 || d1.Applied != d2.Applied {
		t.Fatalf("digests differ: %+v and %+v", d1, d2)
	}
}
