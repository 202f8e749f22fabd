package service_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
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
)

// The test-only skeleton service: on HostDown it records the host in
// `applied` and emits HostUp for it (a stand-in for real behaviour, to prove
// the wiring: state change, inbox and outbox in one transaction).
var testMigrations = fstest.MapFS{
	"0001_applied.sql": {Data: []byte(`CREATE TABLE applied (
		n        INTEGER PRIMARY KEY AUTOINCREMENT,
		event_id TEXT NOT NULL,
		host     TEXT NOT NULL
	);`)},
}

type testService struct {
	failFirst map[string]bool // host -> fail its first delivery
	failures  map[string]int
}

func (ts *testService) spec() service.Spec {
	return service.Spec{
		Name:          "job-tracker", // any catalog service name; the database is the test's
		Description:   "test skeleton",
		Migrations:    testMigrations,
		Subscriptions: []service.Subscription{service.On(ts.handleHostDown)},
	}
}

func (ts *testService) handleHostDown(ctx context.Context, tx *store.Tx, ev *events.HostDown, m service.Delivery) error {
	if ts.failFirst[ev.Host] && ts.failures[ev.Host] == 0 {
		ts.failures[ev.Host]++
		return fmt.Errorf("induced failure for %s", ev.Host)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO applied (event_id, host) VALUES (?, ?)`, m.ID, ev.Host); err != nil {
		return err
	}
	_, err := tx.Emit(ctx, &events.HostUp{Host: ev.Host, LastSeen: time.Now().UTC()})
	return err
}

// runService starts spec on b with its data in dataDir.
func runService(t *testing.T, b *bus.Bus, spec service.Spec, dataDir string) *service.Runtime {
	t.Helper()
	rt, _ := servicetest.Start(t, spec, servicetest.Deps(b, dataDir))
	return rt
}

func publish(t *testing.T, js jetstream.JetStream, subject string, header nats.Header, body string) *jetstream.PubAck {
	t.Helper()
	ack, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: subject, Header: header, Data: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	return ack
}

func cloudHeader(id, ceType string) nats.Header {
	h := nats.Header{}
	h.Set(bus.HeaderSpecVersion, "1.0")
	h.Set(bus.HeaderID, id)
	h.Set(bus.HeaderType, ceType)
	h.Set(bus.HeaderSource, "test")
	h.Set(bus.HeaderMsgID, id)
	return h
}

// appliedHosts reads the skeleton's state from its own SQLite file.
func appliedHosts(t *testing.T, dataDir string) []string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+service.DBPath(dataDir, "job-tracker")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT host FROM applied ORDER BY n`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var h string
		rows.Scan(&h)
		out = append(out, h)
	}
	return out
}

// waitSettled waits until the skeleton's consumer has nothing pending or
// unacknowledged and its outbox in dataDir is empty: from then on nothing
// can be applied or emitted again.
func waitSettled(t *testing.T, js jetstream.JetStream, dataDir string) {
	t.Helper()
	bustest.WaitFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, events.StreamEvents, bus.DurableName("job-tracker", "test-host", "events"))
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
			return fmt.Errorf("consumer: %d pending, %d unacknowledged, %d redelivered", info.NumPending, info.NumAckPending, info.NumRedelivered)
		}
		db, err := sql.Open("sqlite", "file:"+service.DBPath(dataDir, "job-tracker")+"?mode=ro")
		if err != nil {
			return err
		}
		defer db.Close()
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM outbox`).Scan(&n); err != nil {
			return err
		}
		if n != 0 {
			return fmt.Errorf("%d events still in the outbox", n)
		}
		return nil
	})
}

// streamMessages returns the bodies on subject in stream.
func streamMessages(t *testing.T, js jetstream.JetStream, stream, subject string) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	total := info.State.Subjects[subject]
	if strings.HasSuffix(subject, ">") {
		total = 0
		for _, n := range info.State.Subjects {
			total += n
		}
	}
	var out []jetstream.Msg
	if total == 0 {
		return out
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	for uint64(len(out)) < total {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func TestEventChangesStateAndEmitsOnce(t *testing.T) {
	_, b := bustest.Embedded(t)
	data := t.TempDir()
	ts := &testService{failFirst: map[string]bool{"flaky": true}, failures: map[string]int{}}
	runService(t, b, ts.spec(), data)

	publish(t, b.JS, "lifeboat.event.host.down", cloudHeader("id-1", "io.lifeboat.host.down.v1"), `{"host":"h1"}`)
	// The same message again: JetStream drops it by Nats-Msg-Id.
	ack := publish(t, b.JS, "lifeboat.event.host.down", cloudHeader("id-1", "io.lifeboat.host.down.v1"), `{"host":"h1"}`)
	if !ack.Duplicate {
		t.Errorf("republish with the same Nats-Msg-Id was not flagged duplicate by JetStream")
	}
	// The same event id under another Nats-Msg-Id (a duplicate JetStream
	// cannot see): the inbox drops it.
	h := cloudHeader("id-1", "io.lifeboat.host.down.v1")
	h.Set(bus.HeaderMsgID, "other-msg-id")
	publish(t, b.JS, "lifeboat.event.host.down", h, `{"host":"h1"}`)
	// A handler failure is redelivered and then applied once.
	publish(t, b.JS, "lifeboat.event.host.down", cloudHeader("id-2", "io.lifeboat.host.down.v1"), `{"host":"flaky"}`)
	// A header-less message from an outside publisher (`nats pub`).
	publish(t, b.JS, "lifeboat.event.host.down", nil, `{"host":"plain"}`)

	bustest.WaitFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := appliedHosts(t, data); len(got) < 3 {
			return fmt.Errorf("applied %v", got)
		}
		if n := len(streamMessages(t, b.JS, events.StreamEvents, "lifeboat.event.host.up")); n < 3 {
			return fmt.Errorf("%d HostUp emitted", n)
		}
		return nil
	})
	// Nothing is left that could repeat an application: every message is
	// acked and the outbox is empty.
	waitSettled(t, b.JS, data)
	got := appliedHosts(t, data)
	sort.Strings(got)
	if want := []string{"flaky", "h1", "plain"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("applied %v, want each once: %v", got, want)
	}
	ups := streamMessages(t, b.JS, events.StreamEvents, "lifeboat.event.host.up")
	if len(ups) != 3 {
		t.Fatalf("%d HostUp events, want 3", len(ups))
	}
	for _, m := range ups {
		if m.Headers().Get(bus.HeaderType) != "io.lifeboat.host.up.v1" || m.Headers().Get(bus.HeaderID) == "" ||
			m.Headers().Get(bus.HeaderMsgID) != m.Headers().Get(bus.HeaderID) || m.Headers().Get(bus.HeaderSource) != "lifeboat/test-host/job-tracker" {
			t.Errorf("emitted event headers %v lack the CloudEvents envelope", m.Headers())
		}
	}
	if ts.failures["flaky"] != 1 {
		t.Errorf("flaky failed %d times, want 1", ts.failures["flaky"])
	}
}

func TestBadMessagesGoToTheDeadLetterQueue(t *testing.T) {
	_, b := bustest.Embedded(t)
	data := t.TempDir()
	ts := &testService{}
	spec := ts.spec()
	// Subscribe to a wildcard so that unknown types reach the service.
	spec.Subscriptions[0].Subject = "lifeboat.event.host.>"
	runService(t, b, spec, data)

	publish(t, b.JS, "lifeboat.event.host.down", nil, `not json`)
	publish(t, b.JS, "lifeboat.event.host.down", nil, `{"host": 42}`)
	publish(t, b.JS, "lifeboat.event.host.exploded", nil, `{"host":"h1"}`)
	publish(t, b.JS, "lifeboat.event.host.down", cloudHeader("x-1", "io.lifeboat.host.up.v1"), `{"host":"h1"}`)
	publish(t, b.JS, "lifeboat.event.host.down", nil, `{"host":"good-after-bad"}`)

	var dead []jetstream.Msg
	bustest.WaitFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		dead = streamMessages(t, b.JS, events.StreamDLQ, "lifeboat.dlq.job-tracker")
		if len(dead) < 4 {
			return fmt.Errorf("%d dead letters", len(dead))
		}
		if got := appliedHosts(t, data); len(got) != 1 || got[0] != "good-after-bad" {
			return fmt.Errorf("applied %v", got)
		}
		return nil
	})
	wantReasons := []string{"not JSON", "/host", "unknown type", "does not match subject"}
	for i, m := range dead {
		reason := m.Headers().Get(bus.HeaderDLQReason)
		if !strings.Contains(reason, wantReasons[i]) {
			t.Errorf("dead letter %d: reason %q, want it to mention %q", i, reason, wantReasons[i])
		}
		if m.Headers().Get(bus.HeaderDLQSubject) == "" || m.Headers().Get(bus.HeaderDLQConsumer) == "" {
			t.Errorf("dead letter %d lacks its origin headers: %v", i, m.Headers())
		}
	}
	if string(dead[0].Data()) != "not json" {
		t.Errorf("dead letter body %q, want the original", dead[0].Data())
	}
	// The bad messages were acked: nothing is pending on the consumer.
	bustest.WaitFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		c, err := b.JS.Consumer(context.Background(), events.StreamEvents, bus.DurableName("job-tracker", "test-host", "events"))
		if err != nil {
			return err
		}
		info, err := c.Info(context.Background())
		if err != nil {
			return err
		}
		if info.NumAckPending != 0 || info.NumPending != 0 {
			return fmt.Errorf("consumer has %d pending, %d unacked", info.NumPending, info.NumAckPending)
		}
		return nil
	})
}

func TestHandlerFailingEveryTimeIsDeadLettered(t *testing.T) {
	_, b := bustest.Embedded(t)
	data := t.TempDir()
	spec := service.Spec{
		Name:       "job-tracker",
		Migrations: testMigrations,
		Subscriptions: []service.Subscription{service.On(func(ctx context.Context, tx *store.Tx, ev *events.HostDown, m service.Delivery) error {
			if ev.Host == "poison" {
				panic("poisoned")
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO applied (event_id, host) VALUES (?, ?)`, m.ID, ev.Host)
			return err
		})},
	}
	runService(t, b, spec, data)
	publish(t, b.JS, "lifeboat.event.host.down", nil, `{"host":"poison"}`)
	publish(t, b.JS, "lifeboat.event.host.down", nil, `{"host":"fine"}`)
	bustest.WaitFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		dead := streamMessages(t, b.JS, events.StreamDLQ, "lifeboat.dlq.job-tracker")
		if len(dead) != 1 {
			return fmt.Errorf("%d dead letters", len(dead))
		}
		if r := dead[0].Headers().Get(bus.HeaderDLQReason); !strings.Contains(r, "delivery 3 of 3") || !strings.Contains(r, "poisoned") {
			return fmt.Errorf("reason %q", r)
		}
		return nil
	})
	if got := appliedHosts(t, data); len(got) != 1 || got[0] != "fine" {
		t.Fatalf("applied %v, want [fine]", got)
	}
}

func TestStatusEndpoint(t *testing.T) {
	_, b := bustest.Embedded(t)
	ts := &testService{}
	runService(t, b, ts.spec(), t.TempDir())
	publish(t, b.JS, "lifeboat.event.host.down", nil, `{"host":"h1"}`)
	bustest.WaitFor(t, 5*time.Second, 20*time.Millisecond, func() error {
		msg, err := b.NC.Request(events.APISubject("job-tracker", "status"), nil, 2*time.Second)
		if err != nil {
			return err
		}
		var st service.Status
		if err := json.Unmarshal(msg.Data, &st); err != nil {
			return err
		}
		if st.Service != "job-tracker" || st.Host != "test-host" || st.Handled != 1 || len(st.Consumers) != 1 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
}

func natsMsg(subject string, h nats.Header, body string) *nats.Msg {
	return &nats.Msg{Subject: subject, Header: h, Data: []byte(body)}
}

// TestFailureInABatchUndoesOnlyItsMessage: a backlog is handled in batches;
// a handler that writes and then fails in the middle of one leaves none of
// its writes, and every other message of the batch is applied exactly once.
func TestFailureInABatchUndoesOnlyItsMessage(t *testing.T) {
	_, b := bustest.Embedded(t)
	data := t.TempDir()
	spec := service.Spec{
		Name:       "job-tracker",
		Migrations: testMigrations,
		Subscriptions: []service.Subscription{service.On(func(ctx context.Context, tx *store.Tx, ev *events.HostDown, m service.Delivery) error {
			host := ev.Host
			if _, err := tx.ExecContext(ctx, `INSERT INTO applied (event_id, host) VALUES (?, ?)`, m.ID, host); err != nil {
				return err
			}
			if host == "h10-poison" {
				return errors.New("fails after writing")
			}
			return nil
		})},
	}
	// The backlog is there before the service starts, so that it comes in
	// batches of many messages.
	const n = 30
	for i := range n {
		host := fmt.Sprintf("h%02d", i)
		if i == 10 {
			host = "h10-poison"
		}
		publish(t, b.JS, "lifeboat.event.host.down", nil, fmt.Sprintf(`{"host":%q}`, host))
	}
	runService(t, b, spec, data)
	bustest.WaitFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if dead := streamMessages(t, b.JS, events.StreamDLQ, "lifeboat.dlq.job-tracker"); len(dead) != 1 {
			return fmt.Errorf("%d dead letters, want the poison's", len(dead))
		}
		if got := len(appliedHosts(t, data)); got != n-1 {
			return fmt.Errorf("%d applied, want %d", got, n-1)
		}
		return nil
	})
	seen := map[string]bool{}
	for _, h := range appliedHosts(t, data) {
		if h == "h10-poison" {
			t.Errorf("the failing handler's write was kept")
		}
		if seen[h] {
			t.Errorf("%s applied twice", h)
		}
		seen[h] = true
	}
}
