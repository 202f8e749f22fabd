package service_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/client"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/service/servicetest"
	"lifeboat.dev/pkg/store"
)

// The replica service: every host counts each host's HostDown events in
// its replicated table `downs`, and records the kicks addressed to it in
// its own table `kicks`.
var replicaMigrations = fstest.MapFS{
	"0001_init.sql": {Data: []byte(`
		CREATE TABLE downs (host TEXT PRIMARY KEY, n INTEGER NOT NULL, last_id TEXT NOT NULL);
		CREATE TABLE kicks (job TEXT PRIMARY KEY);`)},
}

type replica struct {
	rt *service.Runtime
	mu sync.Mutex
	// kicked lists the jobs kicked on this host.
	kicked []string
	stop   func()
	data   string
}

func replicaSpec(r *replica) service.Spec {
	return service.Spec{
		Name:       "job-tracker",
		Migrations: replicaMigrations,
		Replicated: []string{"downs"},
		Subscriptions: []service.Subscription{
			service.On(func(ctx context.Context, tx *store.Tx, ev *events.HostDown, d service.Delivery) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO downs (host, n, last_id) VALUES (?, 1, ?)
					ON CONFLICT (host) DO UPDATE SET n = n + 1, last_id = excluded.last_id`, ev.Host, d.ID); err != nil {
					return err
				}
				// A consequence every host emits alike.
				_, err := tx.Emit(ctx, &events.HostUp{Host: ev.Host, LastSeen: d.Timestamp, DetectedBy: "replica"})
				return err
			}),
			service.On(func(ctx context.Context, tx *store.Tx, ev *events.JobTrackerKick, d service.Delivery) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO kicks (job) VALUES (?)`, ev.Job); err != nil {
					return err
				}
				tx.AfterCommit(func() {
					r.mu.Lock()
					r.kicked = append(r.kicked, ev.Job)
					r.mu.Unlock()
				})
				return nil
			}).Addressed(),
		},
	}
}

func startReplica(t *testing.T, b *bus.Bus, host, data string) *replica {
	t.Helper()
	r := &replica{data: data}
	deps := servicetest.Deps(b, data)
	deps.Host = host
	r.rt, r.stop = servicetest.Start(t, replicaSpec(r), deps)
	return r
}

func (r *replica) kicks() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.kicked...)
}

func publishDowns(t *testing.T, b *bus.Bus, hosts ...string) {
	t.Helper()
	for _, h := range hosts {
		env, err := bus.NewEnvelope(context.Background(), "test", &events.HostDown{Host: h})
		if err != nil {
			t.Fatal(err)
		}
		if err := bus.NewPublisher(b.JS).Publish(context.Background(), env); err != nil {
			t.Fatal(err)
		}
	}
}

// lastSeq is the stream sequence of the last HostDown, the last event the
// replicas consume.
func lastSeq(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(context.Background(), events.SubjectOf[events.HostDown]())
	if err != nil {
		t.Fatal(err)
	}
	return m.Sequence
}

// waitSame waits until every replica has applied the stream up to its last
// HostDown and their digests agree, and returns the digest.
func waitSame(t *testing.T, b *bus.Bus, rs ...*replica) api.Digest {
	t.Helper()
	var d api.Digest
	bustest.WaitFor(t, 20*time.Second, 0, func() error {
		want := lastSeq(t, b.JS)
		var first string
		for i, r := range rs {
			got, err := r.rt.Digest(context.Background())
			if err != nil {
				return err
			}
			if got.Applied != want {
				return fmt.Errorf("%s applied %d, the last HostDown is %d", got.Host, got.Applied, want)
			}
			if i == 0 {
				first, d = got.SHA256, got
			} else if got.SHA256 != first {
				return fmt.Errorf("%s's digest %s differs from %s's %s", got.Host, got.SHA256, rs[0].rt.Deps.Host, first)
			}
		}
		return nil
	})
	return d
}

func TestEveryHostAppliesEveryEvent(t *testing.T) {
	_, b := bustest.Embedded(t)
	h1 := startReplica(t, b, "h1", t.TempDir())
	h2 := startReplica(t, b, "h2", t.TempDir())
	publishDowns(t, b, "a", "b", "a", "c")
	d := waitSame(t, b, h1, h2)
	if n := rows(d, "downs"); n != 3 {
		t.Fatalf("digest %+v, want the table downs with 3 rows", d)
	}
	// Both hosts emitted a HostUp for each HostDown, under the same id:
	// the stream holds one of each.
	bustest.WaitFor(t, 10*time.Second, 0, func() error {
		for _, r := range []*replica{h1, h2} {
			if n, err := r.rt.DB.Pending(context.Background()); err != nil || n > 0 {
				return fmt.Errorf("%s's outbox holds %d (%v)", r.rt.Deps.Host, n, err)
			}
		}
		return nil
	})
	if ups := streamMessages(t, b.JS, events.StreamEvents, events.SubjectOf[events.HostUp]()); len(ups) != 4 {
		t.Fatalf("%d HostUp events in the stream, want 4 (one per HostDown, whichever host emitted it)", len(ups))
	}
	// Each host has its own durable consumer.
	for _, h := range []string{"h1", "h2"} {
		if _, err := b.JS.Consumer(context.Background(), events.StreamEvents, bus.DurableName("job-tracker", h, "events")); err != nil {
			t.Errorf("consumer of %s: %v", h, err)
		}
	}
	// The host-scoped digest endpoint answers for the named host only.
	var got api.Digest
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.CallHost(ctx, b.NC, "job-tracker", "h2", api.DigestEndpoint, nil, &got); err != nil {
		t.Fatal(err)
	}
	if got.Host != "h2" || got.SHA256 != d.SHA256 {
		t.Fatalf("h2's digest endpoint answered %+v, want host h2 and %s", got, d.SHA256)
	}
}

func TestAHostScopedRequestToADownHostNamesIt(t *testing.T) {
	_, b := bustest.Embedded(t)
	h1 := startReplica(t, b, "h1", t.TempDir())
	h1.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := client.CallHost(ctx, b.NC, "job-tracker", "h1", api.DigestEndpoint, nil, nil)
	var na *client.NoAnswerError
	if !errors.As(err, &na) || !strings.Contains(err.Error(), "host h1") || !strings.Contains(err.Error(), "lifeboat.api.job-tracker.h1.digest") {
		t.Fatalf("error %v, want a NoAnswerError naming host h1 and the subject", err)
	}
}

func TestAnAddressedCommandReachesOnlyItsHost(t *testing.T) {
	_, b := bustest.Embedded(t)
	h1 := startReplica(t, b, "h1", t.TempDir())
	h2 := startReplica(t, b, "h2", t.TempDir())
	ctx := context.Background()
	for _, c := range []struct{ host, job string }{{"h2", "j1"}, {"h1", "j2"}, {"h2", "j3"}} {
		if _, err := client.CommandTo(ctx, b.JS, c.host, &events.JobTrackerKick{Job: c.job}); err != nil {
			t.Fatal(err)
		}
	}
	bustest.WaitFor(t, 10*time.Second, 0, func() error {
		if got := strings.Join(h2.kicks(), ","); got != "j1,j3" {
			return fmt.Errorf("h2 kicked %q, want j1,j3", got)
		}
		if got := strings.Join(h1.kicks(), ","); got != "j2" {
			return fmt.Errorf("h1 kicked %q, want j2", got)
		}
		return nil
	})
	// A command addressed to a host that runs no process waits for it.
	if _, err := client.CommandTo(ctx, b.JS, "h3", &events.JobTrackerKick{Job: "j4"}); err != nil {
		t.Fatal(err)
	}
	h3 := startReplica(t, b, "h3", t.TempDir())
	bustest.WaitFor(t, 10*time.Second, 0, func() error {
		if got := strings.Join(h3.kicks(), ","); got != "j4" {
			return fmt.Errorf("h3 kicked %q, want j4", got)
		}
		return nil
	})
	if len(h1.kicks())+len(h2.kicks()) != 3 {
		t.Fatalf("h1 and h2 kicked %v and %v after j4 went to h3", h1.kicks(), h2.kicks())
	}
}

func TestARestoredDatabaseReplaysFromWhereItStands(t *testing.T) {
	_, b := bustest.Embedded(t)
	h1 := startReplica(t, b, "h1", t.TempDir())
	data2 := t.TempDir()
	h2 := startReplica(t, b, "h2", data2)
	publishDowns(t, b, "a", "b")
	waitSame(t, b, h1, h2)
	h2.stop()
	// h2's database is lost (or restored from before these events): its
	// consumer is ahead of it, and it replays what it lacks.
	if err := removeDB(data2); err != nil {
		t.Fatal(err)
	}
	publishDowns(t, b, "c")
	h2 = startReplica(t, b, "h2", data2)
	d := waitSame(t, b, h1, h2)
	if rows(d, "downs") != 3 {
		t.Fatalf("digest %+v, want 3 hosts in downs", d)
	}
}

func TestAHostBehindTheStreamRebuildsFromAPeer(t *testing.T) {
	_, b := bustest.Embedded(t)
	h1 := startReplica(t, b, "h1", t.TempDir())
	publishDowns(t, b, "a", "b", "a")
	waitSame(t, b, h1)
	// The stream loses its first events (its age or size limit): a new
	// host cannot replay them and copies h1's state instead.
	s, err := b.JS.Stream(context.Background(), events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(context.Background(), jetstream.WithPurgeSequence(3)); err != nil {
		t.Fatal(err)
	}
	h2 := startReplica(t, b, "h2", t.TempDir())
	publishDowns(t, b, "c")
	d := waitSame(t, b, h1, h2)
	if rows(d, "downs") != 3 {
		t.Fatalf("digest %+v, want a, b and c in downs", d)
	}
	st, err := h2.rt.CurrentStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Rebuilt, "from h1's snapshot") {
		t.Fatalf("status says %q, want the rebuild from h1", st.Rebuilt)
	}
}

func TestAHostThatWasAwayPastTheStreamsHeadRebuildsFromAPeer(t *testing.T) {
	_, b := bustest.Embedded(t)
	h1 := startReplica(t, b, "h1", t.TempDir())
	data2 := t.TempDir()
	h2 := startReplica(t, b, "h2", data2)
	publishDowns(t, b, "a")
	waitSame(t, b, h1, h2)
	h2.stop()
	// While h2 is away, events it never applied leave the stream.
	publishDowns(t, b, "b", "c")
	waitSame(t, b, h1)
	s, err := b.JS.Stream(context.Background(), events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(context.Background(), jetstream.WithPurgeSequence(lastSeq(t, b.JS))); err != nil {
		t.Fatal(err)
	}
	h2 = startReplica(t, b, "h2", data2)
	publishDowns(t, b, "d")
	if d := waitSame(t, b, h1, h2); rows(d, "downs") != 4 {
		t.Fatalf("digest %+v, want a, b, c and d in downs", d)
	}
	st, err := h2.rt.CurrentStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Rebuilt, "from h1's snapshot") {
		t.Fatalf("status says %q, want the rebuild from h1", st.Rebuilt)
	}
}

func TestWithNoPeerALostStretchIsSaid(t *testing.T) {
	_, b := bustest.Embedded(t)
	publishDowns(t, b, "a", "b", "c")
	s, err := b.JS.Stream(context.Background(), events.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(context.Background(), jetstream.WithPurgeSequence(3)); err != nil {
		t.Fatal(err)
	}
	h1 := startReplica(t, b, "h1", t.TempDir())
	waitSame(t, b, h1)
	st, err := h1.rt.CurrentStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Rebuilt, "events 1..2 are gone") {
		t.Fatalf("status says %q, want the lost events named", st.Rebuilt)
	}
}

// removeDB deletes a service database with its WAL, as a lost disk would.
func removeDB(data string) error {
	p := service.DBPath(data, "job-tracker")
	for _, f := range []string{p, p + "-wal", p + "-shm"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// rows is the row count of table in d, -1 when d lacks it.
func rows(d api.Digest, table string) int {
	for _, t := range d.Tables {
		if t.Name == table {
			return t.Rows
		}
	}
	return -1
}
