// Package embedded is lifeboat's own authoritative DNS server, the default
// DNS provider: it serves one zone over UDP and TCP (127.0.0.1:5353 by
// default, so no root is needed) from the dns-updater service's SQLite
// state, and changes it through the provider.Provider interface. Every
// change bumps the SOA serial in the same transaction.
//
// The SQLite tables are the zone's truth, written through the service's
// store (Set in a transaction of its own, Apply in the caller's, so
// nothing bypasses its single writer); the server answers from an
// in-memory copy rebuilt after each commit, so a query never waits on the
// database. dns-updater applies its changes with Apply while it applies
// the events that ask for them, so that every host's server answers the
// same zone.
package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/dns-updater/internal/db"
	"lifeboat.dev/services/dns-updater/provider"
)

// DefaultAddr is where the server listens unless told otherwise: loopback,
// and a port above 1024 so that no privilege is needed.
const DefaultAddr = "127.0.0.1:5353"

// Options configure a Server.
type Options struct {
	// Zone is the zone served, e.g. "example.com.".
	Zone string
	// Addr is the UDP and TCP address to listen on; port 0 picks a free
	// port (the same for both).
	Addr string
	// ZoneFile is an RFC 1035 master file with the zone's records. At every
	// Open the SOA and the records of names lifeboat does not own are taken
	// from the file, so the operator edits them there; a name lifeboat owns
	// keeps the records the database holds for it (the file's, from the
	// first load, until lifeboat sets them). Without a file, a new zone
	// gets a SOA and an NS record for ns.<zone>.
	ZoneFile string
	// Owned are the names Set may change.
	Owned provider.Owned
	// Logger receives a line per change; nil means slog.Default().
	Logger *slog.Logger
}

// NewOptions returns the defaults for zone.
func NewOptions(zone string) Options {
	return Options{Zone: zone, Addr: DefaultAddr}
}

// Server is the embedded authoritative server and the provider that changes
// its zone.
type Server struct {
	db   *store.DB
	q    *db.Queries // reads, through the store's readers
	zone string
	opts Options
	log  *slog.Logger

	mu   sync.Mutex // serialises snapshot rebuilds, each from the newest committed zone; guards overlay
	snap atomic.Pointer[snapshot]
	// overlay are record sets served in place of the database's (see
	// Overlay), by name and type.
	overlay map[rrset][]provider.Record

	addr     atomic.Value // string: the address listened on, once started
	udp, tcp *dns.Server
	done     chan struct{} // closed when both servers have returned
}

var _ provider.Provider = (*Server)(nil)

// Open prepares the zone in sdb (the store opened with dns-updater's
// migrations), loading opts.ZoneFile when set, and returns a server ready
// to Start. Set writes in a transaction of its own (sdb.Update), so it must
// not be called while the caller holds one of sdb's transactions (a
// handler's, a job's Finish): it would wait for the writer that caller
// holds.
func Open(ctx context.Context, sdb *store.DB, opts Options) (*Server, error) {
	zone, err := provider.CheckZone(opts.Zone)
	if err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	s := &Server{db: sdb, q: db.New(sdb.R), zone: zone, opts: opts, log: opts.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With(slog.String("provider", "embedded"), slog.String("zone", zone))
	if err := s.prepare(ctx); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	if err := s.reload(ctx); err != nil {
		return nil, fmt.Errorf("embedded: %w", err)
	}
	return s, nil
}

// prepare creates the zone when the database lacks it and merges the zone
// file in, in one transaction.
func (s *Server) prepare(ctx context.Context) error {
	var file *Zone
	if s.opts.ZoneFile != "" {
		z, err := LoadZoneFile(s.opts.ZoneFile, s.zone)
		if err != nil {
			return err
		}
		file = z
	}
	var loaded int
	var serial int64
	var loadErr error
	err := s.db.Update(ctx, func(tx *store.Tx) error {
		loaded, serial, loadErr = s.load(ctx, db.New(tx), file)
		return loadErr
	})
	switch {
	case loadErr != nil:
		return loadErr
	case err != nil:
		return fmt.Errorf("load zone: %w", err)
	}
	if file != nil {
		s.log.InfoContext(ctx, "zone loaded", slog.String("file", s.opts.ZoneFile), slog.Int64("serial", serial), slog.Int("records", loaded))
	}
	return nil
}

// load creates the zone in q's transaction when it is missing and merges
// file in, if any; it returns how many records it wrote and the serial.
func (s *Server) load(ctx context.Context, q *db.Queries, file *Zone) (loaded int, serial int64, err error) {
	now := time.Now().UnixMilli()
	cur, err := q.GetZone(ctx, s.zone)
	exists := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, 0, fmt.Errorf("load zone: %w", err)
	}
	if file == nil {
		if exists {
			return 0, cur.Serial, nil
		}
		if err := q.CreateZone(ctx, db.CreateZoneParams{Zone: s.zone, Mname: "ns." + s.zone, Rname: "hostmaster." + s.zone,
			Serial: 1, Refresh: 3600, Retry: 600, Expire: 604800, Minimum: 60, Ttl: 3600, UpdatedAt: now}); err != nil {
			return 0, 0, fmt.Errorf("create zone: %w", err)
		}
		if err := q.InsertRecord(ctx, db.InsertRecordParams{Zone: s.zone, Name: s.zone, Type: "NS", Value: "ns." + s.zone, Ttl: 3600}); err != nil {
			return 0, 0, fmt.Errorf("create zone: %w", err)
		}
		return 1, 1, nil
	}

	soa := file.SOA
	serial = int64(soa.Serial)
	if exists && serial <= cur.Serial {
		// Loading the file is a change: the serial moves forward (RFC 1982
		// wrap-around aside) so that caches and secondaries see it.
		serial = cur.Serial%4294967295 + 1
	}
	p := db.CreateZoneParams{Zone: s.zone, Mname: provider.CanonicalName(soa.Ns), Rname: provider.CanonicalName(soa.Mbox),
		Serial: serial, Refresh: int64(soa.Refresh), Retry: int64(soa.Retry), Expire: int64(soa.Expire),
		Minimum: int64(soa.Minttl), Ttl: int64(soa.Hdr.Ttl), UpdatedAt: now}
	if exists {
		err = q.UpdateZoneSOA(ctx, db.UpdateZoneSOAParams{Mname: p.Mname, Rname: p.Rname, Serial: p.Serial, Refresh: p.Refresh,
			Retry: p.Retry, Expire: p.Expire, Minimum: p.Minimum, Ttl: p.Ttl, UpdatedAt: now, Zone: s.zone})
	} else {
		err = q.CreateZone(ctx, p)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("load zone: %w", err)
	}

	// Records of owned names that lifeboat has set stay; everything else
	// comes from the file.
	old, err := q.ListRecords(ctx, s.zone)
	if err != nil {
		return 0, 0, fmt.Errorf("load zone: %w", err)
	}
	kept := map[string]bool{}
	var records []db.InsertRecordParams
	for _, r := range old {
		if s.opts.Owned.Owns(r.Name) && r.Type != "NS" {
			kept[r.Name] = true
			records = append(records, db.InsertRecordParams(r))
		}
	}
	for _, r := range file.Records {
		if !kept[r.Name] {
			records = append(records, db.InsertRecordParams{Zone: s.zone, Name: r.Name, Type: r.Type, Value: r.Value, Ttl: int64(r.TTL)})
		}
	}
	if err := q.DeleteZoneRecords(ctx, s.zone); err != nil {
		return 0, 0, fmt.Errorf("load zone: %w", err)
	}
	for _, r := range records {
		if err := q.InsertRecord(ctx, r); err != nil {
			return 0, 0, fmt.Errorf("load zone: %s %s %s: %w", r.Name, r.Type, r.Value, err)
		}
	}
	return len(records), serial, nil
}

// rrset names a record set.
type rrset struct{ name, typ string }

// reload rebuilds the in-memory copy the server answers from: the
// database's zone, with the overlaid record sets in place of its own.
func (s *Server) reload(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	z, err := s.q.GetZone(ctx, s.zone)
	if err != nil {
		return fmt.Errorf("read zone %s: %w", s.zone, err)
	}
	rows, err := s.q.ListRecords(ctx, s.zone)
	if err != nil {
		return fmt.Errorf("read zone %s: %w", s.zone, err)
	}
	if len(s.overlay) > 0 {
		kept := rows[:0:0]
		for _, r := range rows {
			if _, over := s.overlay[rrset{r.Name, r.Type}]; !over {
				kept = append(kept, r)
			}
		}
		for _, rs := range s.overlay {
			for _, r := range rs {
				kept = append(kept, db.DnsRecord{Zone: s.zone, Name: r.Name, Type: r.Type, Value: r.Value, Ttl: int64(r.TTL)})
			}
		}
		rows = kept
	}
	snap, err := newSnapshot(z, rows)
	if err != nil {
		return err
	}
	s.snap.Store(snap)
	return nil
}

// Name returns "embedded".
func (s *Server) Name() string { return "embedded" }

// Zone returns the zone served, fully qualified.
func (s *Server) Zone() string { return s.zone }

// Serial returns the SOA serial being served.
func (s *Server) Serial() uint32 { return s.snap.Load().soa.Serial }

// Authoritative returns the address the server listens on.
func (s *Server) Authoritative() []string { return []string{s.Addr()} }

// Get returns the record set of name and type being served.
func (s *Server) Get(ctx context.Context, name, rtype string) ([]provider.Record, error) {
	name, rtype = provider.CanonicalName(name), strings.ToUpper(rtype)
	if !provider.InZone(name, s.zone) {
		return nil, fmt.Errorf("embedded: get: %w: %q is not in zone %q", provider.ErrOutsideZone, name, s.zone)
	}
	qtype, ok := dns.StringToType[rtype]
	if !ok {
		return nil, fmt.Errorf("embedded: get: %w: %q", provider.ErrUnsupportedType, rtype)
	}
	var out []provider.Record
	for _, rr := range s.snap.Load().rrsets[name][qtype] {
		if r, ok := provider.RecordOf(rr); ok {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("embedded: get %s %s: %w", name, rtype, provider.ErrNotFound)
	}
	slices.SortFunc(out, func(a, b provider.Record) int { return strings.Compare(a.Value, b.Value) })
	return out, nil
}

// Set replaces the record set of rs's name and type, bumps the serial, and
// serves the change once the transaction has committed. It writes in a
// transaction of its own; Apply writes in the caller's.
func (s *Server) Set(ctx context.Context, rs []provider.Record) error {
	rs, err := provider.ValidateSet(s.zone, s.opts.Owned, rs)
	if err != nil {
		return fmt.Errorf("embedded: set: %w", err)
	}
	name, rtype := rs[0].Name, rs[0].Type
	var serial int64
	var setErr error
	err = s.db.Update(ctx, func(tx *store.Tx) error {
		serial, setErr = s.set(ctx, db.New(tx), name, rtype, rs, time.Now())
		return setErr
	})
	switch {
	case setErr != nil:
		return setErr
	case err != nil:
		return fmt.Errorf("embedded: set %s %s: %w", name, rtype, err)
	}
	// Rebuilding after the commit means a query never sees a change the
	// database could still lose; it runs even when ctx ends now, since the
	// change is committed.
	s.dropOverlay(name, rtype)
	if err := s.reload(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("embedded: set %s %s: committed, but serving it failed: %w", name, rtype, err)
	}
	s.log.InfoContext(ctx, "dns record set", slog.String("name", name), slog.String("type", rtype),
		slog.Any("values", provider.Values(rs)), slog.Uint64("ttl", uint64(rs[0].TTL)), slog.Int64("serial", serial))
	return nil
}

// Apply replaces the record set of rs's name and type in tx, the caller's
// transaction, and bumps the serial, dating the zone's change at; the
// server answers the change once tx has committed. It is how a handler
// that applies an event changes the zone, the same way on every host: it
// reads no clock and touches no file or network (the server's in-memory
// copy is rebuilt by tx.AfterCommit). A change that cannot be made (a
// value that is not of its type, a name not owned or outside the zone, a
// CNAME beside other data) fails wrapping provider.ErrInvalidValue,
// ErrNotOwned or ErrOutsideZone, before anything is written.
func (s *Server) Apply(ctx context.Context, tx *store.Tx, rs []provider.Record, at time.Time) error {
	rs, err := provider.ValidateSet(s.zone, s.opts.Owned, rs)
	if err != nil {
		return fmt.Errorf("embedded: set: %w", err)
	}
	name, rtype := rs[0].Name, rs[0].Type
	serial, err := s.set(ctx, db.New(tx), name, rtype, rs, at)
	if err != nil {
		return err
	}
	tx.AfterCommit(func() {
		s.dropOverlay(name, rtype)
		s.reloadCommitted()
	})
	s.log.InfoContext(ctx, "dns record set", slog.String("name", name), slog.String("type", rtype),
		slog.Any("values", provider.Values(rs)), slog.Uint64("ttl", uint64(rs[0].TTL)), slog.Int64("serial", serial))
	return nil
}

// Check says whether Apply would accept rs given the zone the database
// holds now, without changing it.
func (s *Server) Check(ctx context.Context, rs []provider.Record) error {
	rs, err := provider.ValidateSet(s.zone, s.opts.Owned, rs)
	if err != nil {
		return fmt.Errorf("embedded: set: %w", err)
	}
	return s.conflicts(ctx, s.q, rs[0].Name, rs[0].Type)
}

// Overlay serves rs in place of the record set of their name and type
// without writing it to the database, until a change of that record set
// commits (Set or Apply) or DropOverlay removes it. It is what a change
// looks like to this server's clients before it is recorded: dns-updater's
// leader serves a set by hand this way while it verifies it, before the
// event that every host applies it from. Overlay refuses what Apply would.
func (s *Server) Overlay(ctx context.Context, rs []provider.Record) error {
	rs, err := provider.ValidateSet(s.zone, s.opts.Owned, rs)
	if err != nil {
		return fmt.Errorf("embedded: set: %w", err)
	}
	if err := s.conflicts(ctx, s.q, rs[0].Name, rs[0].Type); err != nil {
		return err
	}
	s.mu.Lock()
	if s.overlay == nil {
		s.overlay = map[rrset][]provider.Record{}
	}
	s.overlay[rrset{rs[0].Name, rs[0].Type}] = rs
	s.mu.Unlock()
	return s.Reload(ctx)
}

// DropOverlay serves the database's record set of name and rtype again.
func (s *Server) DropOverlay(ctx context.Context, name, rtype string) error {
	if !s.dropOverlay(provider.CanonicalName(name), strings.ToUpper(rtype)) {
		return nil
	}
	return s.Reload(ctx)
}

// DropOverlayOf serves the database's record set of rs's name and type
// again if the overlay in its place is still rs.
func (s *Server) DropOverlayOf(ctx context.Context, rs []provider.Record) error {
	if len(rs) == 0 {
		return nil
	}
	k := rrset{provider.CanonicalName(rs[0].Name), strings.ToUpper(rs[0].Type)}
	s.mu.Lock()
	cur, ok := s.overlay[k]
	same := ok && slices.EqualFunc(cur, rs, func(a, b provider.Record) bool { return a.Value == b.Value && a.TTL == b.TTL })
	if same {
		delete(s.overlay, k)
	}
	s.mu.Unlock()
	if !same {
		return nil
	}
	return s.Reload(ctx)
}

// dropOverlay forgets the overlay of a record set; it says whether there
// was one.
func (s *Server) dropOverlay(name, rtype string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := rrset{name, rtype}
	_, ok := s.overlay[k]
	delete(s.overlay, k)
	return ok
}

// Reload rebuilds what the server answers from the database: after the
// database was changed other than through Set or Apply (a snapshot of a
// peer's state loaded in its place).
func (s *Server) Reload(ctx context.Context) error {
	if err := s.reload(ctx); err != nil {
		return fmt.Errorf("embedded: %w", err)
	}
	return nil
}

// reloadCommitted serves what a committed Apply wrote. A failure to read
// the zone back leaves the previous copy served; the next change or
// Reload serves it.
func (s *Server) reloadCommitted() {
	if err := s.reload(context.Background()); err != nil {
		s.log.Error("the zone changed, but serving the change failed", slog.String("error", err.Error()))
	}
}

// conflicts refuses a record set of rtype at name beside records of
// other types when one of them is a CNAME, and a CNAME at the apex.
func (s *Server) conflicts(ctx context.Context, q *db.Queries, name, rtype string) error {
	types, err := q.ListTypesAt(ctx, db.ListTypesAtParams{Zone: s.zone, Name: name})
	if err != nil {
		return fmt.Errorf("embedded: set %s %s: %w", name, rtype, err)
	}
	for _, t := range types {
		if t != rtype && (t == "CNAME" || rtype == "CNAME") {
			return fmt.Errorf("embedded: set: %w: %s already has %s records, and a CNAME must be alone at its name", provider.ErrInvalidValue, name, t)
		}
	}
	if rtype == "CNAME" && name == s.zone {
		return fmt.Errorf("embedded: set: %w: the zone's apex %s holds SOA and NS, so it cannot be a CNAME", provider.ErrInvalidValue, name)
	}
	return nil
}

// set replaces the record set in q's transaction and bumps the serial,
// dating the change at, and returns the new serial.
func (s *Server) set(ctx context.Context, q *db.Queries, name, rtype string, rs []provider.Record, at time.Time) (int64, error) {
	if err := s.conflicts(ctx, q, name, rtype); err != nil {
		return 0, err
	}
	if err := q.DeleteRRset(ctx, db.DeleteRRsetParams{Zone: s.zone, Name: name, Type: rtype}); err != nil {
		return 0, fmt.Errorf("embedded: set %s %s: %w", name, rtype, err)
	}
	for _, r := range rs {
		if err := q.InsertRecord(ctx, db.InsertRecordParams{Zone: s.zone, Name: name, Type: rtype, Value: r.Value, Ttl: int64(r.TTL)}); err != nil {
			return 0, fmt.Errorf("embedded: set %s %s: %w", name, rtype, err)
		}
	}
	serial, err := q.BumpSerial(ctx, db.BumpSerialParams{UpdatedAt: at.UnixMilli(), Zone: s.zone})
	if err != nil {
		return 0, fmt.Errorf("embedded: set %s %s: serial: %w", name, rtype, err)
	}
	return serial, nil
}
