package backupscheduler

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	_ "modernc.org/sqlite"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/client"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/service/servicetest"
)

// The contract's endpoint names and wire types (lifeboat.dev/events/api)
// under the names this package's tests use.
const (
	EndpointPlanList       = api.PlanList
	EndpointPlanShow       = api.PlanShow
	EndpointPlanSet        = api.PlanSet
	EndpointPlanDisable    = api.PlanDisable
	EndpointPlanEnable     = api.PlanEnable
	EndpointBackupList     = api.BackupList
	EndpointBackupVerify   = api.BackupVerify
	EndpointCatalogRebuild = api.CatalogRebuild
)

type (
	PlanView          = api.PlanView
	PlanDetail        = api.PlanDetail
	BackupView        = api.BackupView
	PlanRequest       = api.PlanRequest
	BackupListRequest = api.BackupListRequest
	VerifyRequest     = api.VerifyRequest
	VerifyResult      = api.VerifyResult
	RebuildRequest    = api.RebuildRequest
)

// PlanSetRequest is api.PlanSetRequest written with this package's Store
// and Hooks, as the tests build plans; TestWireTypesAreTheContracts keeps
// its JSON the contract's.
type PlanSetRequest struct {
	Name        string    `json:"name"`
	Instance    *string   `json:"instance,omitempty"`
	Description *string   `json:"description,omitempty"`
	Schedule    *string   `json:"schedule,omitempty"`
	Directory   *string   `json:"directory,omitempty"`
	Store       *Store    `json:"store,omitempty"`
	Hooks       *Hooks    `json:"hooks,omitempty"`
	Targets     *[]string `json:"targets,omitempty"`
	MinKeep     *int      `json:"min_keep,omitempty"`
	Disabled    *bool     `json:"disabled,omitempty"`
}

// TestWireTypesAreTheContracts: a plan, a store and its hooks, the test's
// PlanSetRequest and a catalog rebuild's result read in JSON as the
// contract's types and back, unchanged: what the service sends and what it
// is sent are the contract's, field for field.
func TestWireTypesAreTheContracts(t *testing.T) {
	t.Parallel()
	keep := 3
	p := Plan{Name: "p", Instance: "i", Description: "d", Schedule: "1h,1d/7d", Directory: "/b",
		Store: Store{Kind: StoreCommand, Path: "/s", Include: []string{"a"}, Exclude: []string{"b"}, Dump: []string{"dump"}, Load: []string{"load"},
			Env: []string{"K=V"}, Timeout: Duration(time.Minute)},
		Hooks:   Hooks{Pre: &Hook{Command: []string{"pre"}, Timeout: Duration(time.Second)}, Post: &Hook{Command: []string{"post"}}},
		Targets: []string{"t"}, Disabled: true, MinKeep: &keep}
	s := "x"
	for _, c := range []struct {
		local, wire any
	}{
		{p, &api.Plan{}},
		{PlanSetRequest{Name: "p", Instance: &s, Description: &s, Schedule: &s, Directory: &s, Store: &p.Store, Hooks: &p.Hooks,
			Targets: &p.Targets, MinKeep: &keep, Disabled: &p.Disabled}, &api.PlanSetRequest{}},
		{RebuildResult{Plan: "p", Dir: "/b", Total: 1, Added: 2, Removed: 3, Invalid: 4, Verified: 5, Announced: 6, Cleaned: []string{"c"}, Completed: 7},
			&api.RebuildResult{}},
	} {
		local, err := json.Marshal(c.local)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(strings.NewReader(string(local)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(c.wire); err != nil {
			t.Fatalf("%T as %T: %v", c.local, c.wire, err)
		}
		wire, err := json.Marshal(c.wire)
		if err != nil || string(wire) != string(local) {
			t.Errorf("%T as %T:\n%s\n%s", c.local, c.wire, local, wire)
		}
	}
	shown := p.Store
	shown.Env = []string{"K=" + api.Redacted}
	if w := wirePlan(p); !reflect.DeepEqual(storeOf(w.Store), shown) || !reflect.DeepEqual(hooksOf(w.Hooks), p.Hooks) {
		t.Errorf("wirePlan, storeOf and hooksOf lose fields: %+v", w)
	}
}

// node is the backup-scheduler running on a real embedded NATS server, and
// what it published.
type node struct {
	t       *testing.T
	b       *bus.Bus
	dataDir string
	rec     *recorder
	stopFn  func()
}

// startNode runs the service with cfg on b and dataDir until stop or the
// end of the test.
func startNode(t *testing.T, b *bus.Bus, cfg Config, dataDir string, rec *recorder) *node {
	t.Helper()
	spec, err := Spec(cfg)
	if err != nil {
		t.Fatal(err)
	}
	deps := service.Deps{Bus: b, Host: "test-host", DataDir: dataDir, Version: "0.0.1-test"}
	_, stop := servicetest.Start(t, spec, deps)
	return &node{t: t, b: b, dataDir: dataDir, rec: rec, stopFn: stop}
}

// stop shuts the service down cleanly (its outbox flushed).
func (n *node) stop() { n.stopFn() }

// call asks an endpoint of the service and decodes the answer into out;
// an error the endpoint answered with comes back as "<code> <message>".
func call(t *testing.T, nc *nats.Conn, endpoint string, req, out any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := client.Call(ctx, nc, Name, endpoint, req, out)
	var ae *client.Error
	if errors.As(err, &ae) {
		return fmt.Errorf("%s %s", ae.Code, ae.Message)
	}
	if err != nil {
		t.Fatalf("%s: %v", endpoint, err)
	}
	return nil
}

// mustCall is call that fails the test on an API error.
func mustCall(t *testing.T, nc *nats.Conn, endpoint string, req, out any) {
	t.Helper()
	if err := call(t, nc, endpoint, req, out); err != nil {
		t.Fatal(err)
	}
}

// take publishes a backup-scheduler.take and returns its id.
func take(t *testing.T, b *bus.Bus, plan string, kind events.BackupKind) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := client.Command(ctx, b.JS, &events.BackupTake{Plan: plan, Kind: kind, Reason: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// recorded is one backup event seen on the bus, in stream order.
type recorded struct {
	Taken  *events.BackupTaken
	Failed *events.BackupFailed
	Pruned *events.BackupPruned
}

// recorder collects the backup events of the stream in order.
type recorder struct {
	mu  sync.Mutex
	evs []recorded
}

// record reads every backup event of the LIFEBOAT_EVENTS stream from its
// start (so restarts of the service do not lose any) until the test ends.
func record(t *testing.T, b *bus.Bus) *recorder {
	t.Helper()
	r := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := b.JS.OrderedConsumer(ctx, events.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"lifeboat.event.backup.>"}})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := c.Consume(func(m jetstream.Msg) {
		var ev recorded
		var err error
		switch m.Subject() {
		case events.SubjectOf[events.BackupTaken]():
			ev.Taken = &events.BackupTaken{}
			err = json.Unmarshal(m.Data(), ev.Taken)
		case events.SubjectOf[events.BackupFailed]():
			ev.Failed = &events.BackupFailed{}
			err = json.Unmarshal(m.Data(), ev.Failed)
		case events.SubjectOf[events.BackupPruned]():
			ev.Pruned = &events.BackupPruned{}
			err = json.Unmarshal(m.Data(), ev.Pruned)
		default:
			return
		}
		if err != nil {
			t.Errorf("undecodable %s: %v", m.Subject(), err)
			return
		}
		r.mu.Lock()
		r.evs = append(r.evs, ev)
		r.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Stop(); cancel() })
	return r
}

func (r *recorder) all() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.evs...)
}

// count counts the events of plan matching f.
func (r *recorder) count(plan string, f func(recorded) bool) int {
	n := 0
	for _, e := range r.all() {
		if planOf(e) == plan && f(e) {
			n++
		}
	}
	return n
}

func planOf(e recorded) string {
	switch {
	case e.Taken != nil:
		return e.Taken.Plan
	case e.Failed != nil:
		return e.Failed.Plan
	default:
		return e.Pruned.Plan
	}
}

func isTaken(e recorded) bool  { return e.Taken != nil }
func isFailed(e recorded) bool { return e.Failed != nil }
func isPruned(e recorded) bool { return e.Pruned != nil }

// atLeast is a condition: n events of plan matching f.
func (r *recorder) atLeast(plan string, n int, what string, f func(recorded) bool) func() error {
	return func() error {
		if got := r.count(plan, f); got < n {
			return fmt.Errorf("%d %s events of plan %s, want %d", got, what, plan, n)
		}
		return nil
	}
}

// writer commits small transactions to a SQLite database until stopped,
// as an application using the store would.
type writer struct {
	path    string
	stop    chan struct{}
	done    chan error
	commits atomic.Int64
}

// newStore creates a WAL SQLite database at path with a table items.
func newStore(t testing.TB, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, body BLOB NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 500)
		INSERT INTO items(body) SELECT randomblob(300) FROM n`); err != nil {
		t.Fatal(err)
	}
}

// startWriter inserts a row per transaction into path's items until the
// test ends.
func startWriter(t *testing.T, path string) *writer {
	t.Helper()
	w := &writer{path: path, stop: make(chan struct{}), done: make(chan error, 1)}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	go func() {
		defer db.Close()
		for {
			select {
			case <-w.stop:
				w.done <- nil
				return
			default:
			}
			if _, err := db.Exec(`INSERT INTO items(body) VALUES (randomblob(200))`); err != nil {
				w.done <- err
				return
			}
			w.commits.Add(1)
			time.Sleep(2 * time.Millisecond) // an application's pace, not a stress test
		}
	}()
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(w.stop); <-w.done }) })
	return w
}

// checkWithCLI opens a database with the stock sqlite3 CLI, runs PRAGMA
// integrity_check and returns the row count of items.
func checkWithCLI(t *testing.T, sqlite3, path string) int {
	t.Helper()
	out, err := exec.Command(sqlite3, "-readonly", path, "PRAGMA integrity_check;").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("sqlite3 %s: PRAGMA integrity_check: %v: %s", path, err, out)
	}
	out, err = exec.Command(sqlite3, "-readonly", path, "SELECT count(*), min(id), max(id) FROM items;").CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 %s: %v: %s", path, err, out)
	}
	var n, lo, hi int
	if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "%d|%d|%d", &n, &lo, &hi); err != nil {
		t.Fatalf("sqlite3 %s: %q: %v", path, out, err)
	}
	// The copy is a snapshot: the rows committed before it, with no gap.
	if lo != 1 || hi != n {
		t.Fatalf("%s holds %d rows with ids %d..%d: not a snapshot of the committed rows", path, n, lo, hi)
	}
	return n
}

// sqlitePlan is a plan backing up the SQLite database at db into dir.
func sqlitePlan(name, sched, db, dir string) Plan {
	return Plan{Name: name, Instance: name + "-instance", Schedule: sched, Directory: dir, Store: Store{Kind: StoreSQLite, Path: db}}
}

// names lists the backup names in dir.
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// dbPath is where the service under test keeps its state.
func dbPath(dataDir string) string { return filepath.Join(dataDir, Name, "state.db") }

func execOut(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
