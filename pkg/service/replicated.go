package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/store"
)

// A service's tables are of two kinds (DESIGN §1 "Replicas must not
// diverge"): replicated ones (Spec.Replicated), which every host derives
// from the same events and which must be equal everywhere, and host-local
// ones (the inbox, outbox and work queue, what only this host can know).
// The runtime hashes the replicated tables for the digest endpoint, and
// copies them for a host that must rebuild its state (the snapshot
// endpoint).

// snapshotBucket is the object store bucket snapshots travel through; they
// are kept an hour, long enough for the host that asked to read one.
const snapshotBucket = "lifeboat-snapshots"

// tableRows is one replicated table, rows in a canonical order, values in
// a canonical encoding (see encodeValue).
type tableRows struct {
	Name    string   `json:"name"`
	Columns []string `json:"columns"`
	Rows    [][]any  `json:"rows"`
}

// replicaState is the replicated state at one position of the events
// stream.
type replicaState struct {
	Service string      `json:"service"`
	Host    string      `json:"host"`
	Applied uint64      `json:"applied"`
	Tables  []tableRows `json:"tables"`
}

// replicatedTables are the service's replicated tables and the runtime's
// own (the leaders' epochs), sorted.
func (rt *Runtime) replicatedTables() []string {
	return slices.Sorted(slices.Values(append([]string{"leader_epochs"}, rt.Spec.Replicated...)))
}

// readState reads the replicated tables and the position they stand at in
// one read transaction, so that they agree.
func (rt *Runtime) readState(ctx context.Context) (replicaState, error) {
	st := replicaState{Service: rt.Spec.Name, Host: rt.Deps.Host}
	tx, err := rt.DB.R.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return st, err
	}
	defer func() { _ = tx.Rollback() }()
	var seq sql.NullInt64
	if err := tx.QueryRowContext(ctx, "SELECT seq FROM stream_position WHERE stream = ?", events.StreamEvents).Scan(&seq); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return st, fmt.Errorf("applied: %w", err)
	}
	st.Applied = uint64(seq.Int64)
	for _, name := range rt.replicatedTables() {
		t, err := readTable(ctx, tx, name)
		if err != nil {
			return st, err
		}
		st.Tables = append(st.Tables, t)
	}
	return st, nil
}

func readTable(ctx context.Context, tx *sql.Tx, name string) (tableRows, error) {
	t := tableRows{Name: name, Rows: [][]any{}}
	cols, err := columns(ctx, tx, name)
	if err != nil {
		return t, err
	}
	t.Columns = cols
	order := make([]string, len(cols))
	for i := range cols {
		order[i] = strconv.Itoa(i + 1)
	}
	rows, err := tx.QueryContext(ctx, fmt.Sprintf("SELECT %s FROM %s ORDER BY %s", quoteAll(cols), quote(name), strings.Join(order, ", ")))
	if err != nil {
		return t, fmt.Errorf("table %s: %w", name, err)
	}
	defer rows.Close()
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return t, fmt.Errorf("table %s: %w", name, err)
		}
		for i, v := range vals {
			vals[i] = encodeValue(v)
		}
		t.Rows = append(t.Rows, vals)
	}
	return t, rows.Err()
}

// columns lists a table's columns in their declared order.
func columns(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, table string) ([]string, error) {
	rows, err := q.QueryContext(ctx, "SELECT name FROM pragma_table_info(?) ORDER BY cid", table)
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", table, err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("replicated table %s does not exist", table)
	}
	return cols, nil
}

// encodeValue makes a column value canonical JSON: integers as numbers,
// text as strings, and the rest tagged so that decoding gives back the
// same SQLite type: {"f": real}, {"b": base64 blob}, {"t": RFC 3339 time}.
func encodeValue(v any) any {
	switch x := v.(type) {
	case nil, int64, string:
		return x
	case bool:
		if x {
			return int64(1)
		}
		return int64(0)
	case float64:
		return map[string]any{"f": x}
	case []byte:
		return map[string]any{"b": base64.StdEncoding.EncodeToString(x)}
	case time.Time:
		return map[string]any{"t": x.UTC().Format(time.RFC3339Nano)}
	}
	return fmt.Sprint(v)
}

// decodeValue is encodeValue's inverse on JSON decoded with UseNumber.
func decodeValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, string:
		return x, nil
	case json.Number:
		return x.Int64()
	case map[string]any:
		for tag, raw := range x {
			s, _ := raw.(string)
			switch tag {
			case "f":
				n, ok := raw.(json.Number)
				if !ok {
					return nil, fmt.Errorf("real %v", raw)
				}
				return n.Float64()
			case "b":
				return base64.StdEncoding.DecodeString(s)
			case "t":
				return time.Parse(time.RFC3339Nano, s)
			}
		}
	}
	return nil, fmt.Errorf("unknown value %v", v)
}

// digest hashes the state: a table's hash covers its columns and rows, the
// whole one every table's.
func (st replicaState) digest() api.Digest {
	d := api.Digest{Service: st.Service, Host: st.Host, Applied: st.Applied, Tables: []api.TableDigest{}}
	all := sha256.New()
	for _, t := range st.Tables {
		b, _ := json.Marshal(t) // values are encodeValue's: always marshalable
		sum := sha256.Sum256(b)
		d.Tables = append(d.Tables, api.TableDigest{Name: t.Name, Rows: len(t.Rows), SHA256: hex.EncodeToString(sum[:])})
		all.Write(sum[:])
	}
	d.SHA256 = hex.EncodeToString(all.Sum(nil))
	return d
}

// Digest hashes the service's replicated state on this host.
func (rt *Runtime) Digest(ctx context.Context) (api.Digest, error) {
	st, err := rt.readState(ctx)
	if err != nil {
		return api.Digest{}, err
	}
	return st.digest(), nil
}

func (rt *Runtime) digestEndpoint(req micro.Request) {
	ctx, cancel := context.WithTimeout(rt.ctx, 30*time.Second)
	defer cancel()
	d, err := rt.Digest(ctx)
	RespondJSON(req, d, err)
}

// snapshotEndpoint writes the replicated state to the object store for a
// peer that must rebuild, and answers where it is.
func (rt *Runtime) snapshotEndpoint(req micro.Request) {
	ctx, cancel := context.WithTimeout(rt.ctx, time.Minute)
	defer cancel()
	reply, err := rt.writeSnapshot(ctx)
	RespondJSON(req, reply, err)
}

func (rt *Runtime) writeSnapshot(ctx context.Context) (api.SnapshotReply, error) {
	st, err := rt.readState(ctx)
	if err != nil {
		return api.SnapshotReply{}, err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return api.SnapshotReply{}, err
	}
	obj, err := rt.snapshots(ctx)
	if err != nil {
		return api.SnapshotReply{}, err
	}
	name := fmt.Sprintf("%s/%s/%d", rt.Spec.Name, rt.Deps.Host, st.Applied)
	if _, err := obj.PutBytes(ctx, name, b); err != nil {
		return api.SnapshotReply{}, fmt.Errorf("snapshot: %w", err)
	}
	return api.SnapshotReply{Bucket: snapshotBucket, Object: name, Applied: st.Applied, SHA256: st.digest().SHA256}, nil
}

func (rt *Runtime) snapshots(ctx context.Context) (jetstream.ObjectStore, error) {
	var obj jetstream.ObjectStore
	err := retry(ctx, rt.Logger, "object store "+snapshotBucket, func(ctx context.Context) error {
		var err error
		obj, err = rt.Deps.Bus.JS.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      snapshotBucket,
			Description: "Lifeboat: services' replicated state, for a host that rebuilds from a peer",
			TTL:         time.Hour,
			Replicas:    rt.Deps.Bus.Replicas(),
		})
		return err
	})
	return obj, err
}

// rebuild replaces the replicated state with a peer's snapshot, because
// the stream no longer holds the events after what this database applied
// (it holds first..last). It answers the position the state now stands
// at. With no peer to give one (a single host, or none current) it says
// loudly what is lost and goes on from the stream's first event.
func (rt *Runtime) rebuild(ctx context.Context, first, last uint64) (uint64, error) {
	applied, err := rt.DB.Applied(ctx, events.StreamEvents)
	if err != nil {
		return 0, err
	}
	hosts, err := rt.ServiceHosts(ctx, nil, 250*time.Millisecond, 2*time.Second)
	if err != nil {
		return 0, err
	}
	for _, peer := range hosts {
		if peer == rt.Deps.Host {
			continue
		}
		var reply api.SnapshotReply
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := rt.CallHost(cctx, peer, api.SnapshotEndpoint, nil, &reply)
		cancel()
		if err != nil {
			rt.Logger.Warn("peer gave no snapshot", slog.String("peer", peer), slog.String("error", err.Error()))
			continue
		}
		if reply.Applied+1 < first {
			rt.Logger.Warn("peer's state is as stale as ours", slog.String("peer", peer), slog.Uint64("peer_applied", reply.Applied), slog.Uint64("stream_first", first))
			continue
		}
		if err := rt.loadSnapshot(ctx, reply); err != nil {
			rt.Logger.Warn("snapshot not loaded", slog.String("peer", peer), slog.String("error", err.Error()))
			continue
		}
		rt.setRebuilt(fmt.Sprintf("rebuilt at %s from %s's snapshot at stream sequence %d (this database had applied %d; the stream starts at %d)",
			time.Now().UTC().Format(time.RFC3339), peer, reply.Applied, applied, first))
		return reply.Applied, nil
	}
	lost := fmt.Sprintf("events %d..%d are gone from %s and no peer gave a snapshot: this host goes on from %d without them; restore this service's database from a backup or rebuild it once a peer runs",
		applied+1, first-1, events.StreamEvents, first)
	rt.Logger.Error("replicated state is incomplete: " + lost)
	rt.setRebuilt(lost)
	return first - 1, nil
}

func (rt *Runtime) setRebuilt(s string) {
	rt.mu.Lock()
	rt.rebuilt = s
	rt.mu.Unlock()
}

// loadSnapshot replaces the replicated tables with the snapshot's rows and
// takes its position, in one transaction.
func (rt *Runtime) loadSnapshot(ctx context.Context, reply api.SnapshotReply) error {
	obj, err := rt.snapshots(ctx)
	if err != nil {
		return err
	}
	b, err := obj.GetBytes(ctx, reply.Object)
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", reply.Object, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var st replicaState
	if err := dec.Decode(&st); err != nil {
		return fmt.Errorf("snapshot %s: %w", reply.Object, err)
	}
	if d := st.digest(); d.SHA256 != reply.SHA256 {
		return fmt.Errorf("snapshot %s: digest %s, the peer said %s", reply.Object, d.SHA256, reply.SHA256)
	}
	want := rt.replicatedTables()
	var got []string
	for _, t := range st.Tables {
		got = append(got, t.Name)
	}
	if !slices.Equal(want, got) {
		return fmt.Errorf("snapshot %s holds tables %v, this build replicates %v", reply.Object, got, want)
	}
	return rt.DB.Update(ctx, func(tx *store.Tx) error {
		if _, err := tx.ExecContext(ctx, "PRAGMA defer_foreign_keys = ON"); err != nil {
			return err
		}
		for _, t := range st.Tables {
			if _, err := tx.ExecContext(ctx, "DELETE FROM "+quote(t.Name)); err != nil {
				return fmt.Errorf("table %s: %w", t.Name, err)
			}
			marks := strings.TrimSuffix(strings.Repeat("?, ", len(t.Columns)), ", ")
			ins := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", quote(t.Name), quoteAll(t.Columns), marks)
			for _, row := range t.Rows {
				vals := make([]any, len(row))
				for i, v := range row {
					if vals[i], err = decodeValue(v); err != nil {
						return fmt.Errorf("table %s: %w", t.Name, err)
					}
				}
				if _, err := tx.ExecContext(ctx, ins, vals...); err != nil {
					return fmt.Errorf("table %s: %w", t.Name, err)
				}
			}
		}
		return tx.ResetApplied(ctx, events.StreamEvents, st.Applied)
	})
}

func quote(name string) string { return `"` + strings.ReplaceAll(name, `"`, `""`) + `"` }

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quote(n)
	}
	return strings.Join(q, ", ")
}
