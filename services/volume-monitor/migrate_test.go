package volumemonitor

import (
	"io/fs"
	"path/filepath"
	"slices"
	"testing"
	"testing/fstest"

	lbsql "lifeboat.dev/sql"

	"lifeboat.dev/pkg/store"
)

// TestTheHostsTableSplitsIntoStatesAndHeartbeats: a database of the first
// schema keeps what it knew once the hosts table is split: states set by
// events become host_states, heartbeats become heartbeats.
func TestTheHostsTableSplitsIntoStatesAndHeartbeats(t *testing.T) {
	all, err := lbsql.Migrations(Name)
	if err != nil {
		t.Fatal(err)
	}
	first, err := fs.ReadFile(all, "0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "state.db")
	old, err := store.Open(t.Context(), path, store.NewOptions("test", fstest.MapFS{"0001_init.sql": {Data: first}}))
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Update(t.Context(), func(tx *store.Tx) error {
		_, err := tx.ExecContext(t.Context(), `INSERT INTO hosts (host, address, services, last_seen, state, state_since, reason, detected_by) VALUES
			('beating', '10.0.0.1:9180', '["sync"]', 5000, 'up', 1000, '', ''),
			('dead', '', '[]', 7000, 'down', 8000, 'no heartbeat for 30s', 'volume-monitor@h1'),
			('told', '', '[]', NULL, 'down', 9000, 'operator', 'nats pub')`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	old.Close()

	db, err := store.Open(t.Context(), path, store.NewOptions("test", all))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var states, beats []string
	rows, err := db.R.Query(`SELECT host || ' ' || state || ' ' || state_since || ' ' || COALESCE(last_seen, '-') FROM host_states ORDER BY host`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		rows.Scan(&s)
		states = append(states, s)
	}
	rows.Close()
	rows, err = db.R.Query(`SELECT host || ' ' || address || ' ' || services || ' ' || last_seen FROM heartbeats ORDER BY host`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		rows.Scan(&s)
		beats = append(beats, s)
	}
	rows.Close()
	if got, want := states, []string{"dead down 8000 7000", "told down 9000 -"}; !slices.Equal(got, want) {
		t.Errorf("host_states %q, want %q", got, want)
	}
	if got, want := beats, []string{`beating 10.0.0.1:9180 ["sync"] 5000`, "dead  [] 7000"}; !slices.Equal(got, want) {
		t.Errorf("heartbeats %q, want %q", got, want)
	}
}
