// Package embedded is lifeboat's own authoritative DNS server, the default
// DNS provider: it serves one zone over UDP and TCP (127.0.0.1:5353 by
// default, so no root is needed) from the dns-updater service's SQLite
// state, and changes it through the provider.Provider interface. Every
// change bumps the SOA serial in the same transaction.
//
// The SQLite tables are the zone's truth, written through the service's
// store (store.DB.Update, so nothing bypasses its single writer); the
// server answers from an in-memory copy rebuilt after each change, so a
// query never waits on the database.
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

	mu   sync.Mutex // serialises changes and snapshot rebuilds
	snap atomic.Pointer[snapshot]

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

// reload rebuilds the in-memory copy the server answers from.
func (s *Server) reload(ctx context.Context) error {
	z, err := s.q.GetZone(ctx, s.zone)
	if err != nil {
		return fmt.Errorf("read zone %s: %w", s.zone, err)
	}
	rows, err := s.q.ListRecords(ctx, s.zone)
	if err != nil {
		return fmt.Errorf("read zone %s: %w", s.zone, err)
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
// serves the change once the transaction has committed.
func (s *Server) Set(ctx context.Context, rs []provider.Record) error {
	rs, err := provider.ValidateSet(s.zone, s.opts.Owned, rs)
	if err != nil {
		return fmt.Errorf("embedded: set: %w", err)
	}
	name, rtype := rs[0].Name, rs[0].Type
	s.mu.Lock()
	defer s.mu.Unlock()
	var serial int64
	var setErr error
	err = s.db.Update(ctx, func(tx *store.Tx) error {
		serial, setErr = s.set(ctx, db.New(tx), name, rtype, rs)
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
	if err := s.reload(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("embedded: set %s %s: committed, but serving it failed: %w", name, rtype, err)
	}
	s.log.InfoContext(ctx, "dns record set", slog.String("name", name), slog.String("type", rtype),
		slog.Any("values", provider.Values(rs)), slog.Uint64("ttl", uint64(rs[0].TTL)), slog.Int64("serial", serial))
	return nil
}

// set replaces the record set in q's transaction and bumps the serial,
// which it returns.
func (s *Server) set(ctx context.Context, q *db.Queries, name, rtype string, rs []provider.Record) (int64, error) {
	types, err := q.ListTypesAt(ctx, db.ListTypesAtParams{Zone: s.zone, Name: name})
	if err != nil {
		return 0, fmt.Errorf("embedded: set %s %s: %w", name, rtype, err)
	}
	for _, t := range types {
		if t != rtype && (t == "CNAME" || rtype == "CNAME") {
			return 0, fmt.Errorf("embedded: set: %w: %s already has %s records, and a CNAME must be alone at its name", provider.ErrInvalidValue, name, t)
		}
	}
	if rtype == "CNAME" && name == s.zone {
		return 0, fmt.Errorf("embedded: set: %w: the zone's apex %s holds SOA and NS, so it cannot be a CNAME", provider.ErrInvalidValue, name)
	}
	if err := q.DeleteRRset(ctx, db.DeleteRRsetParams{Zone: s.zone, Name: name, Type: rtype}); err != nil {
		return 0, fmt.Errorf("embedded: set %s %s: %w", name, rtype, err)
	}
	for _, r := range rs {
		if err := q.InsertRecord(ctx, db.InsertRecordParams{Zone: s.zone, Name: name, Type: rtype, Value: r.Value, Ttl: int64(r.TTL)}); err != nil {
			return 0, fmt.Errorf("embedded: set %s %s: %w", name, rtype, err)
		}
	}
	serial, err := q.BumpSerial(ctx, db.BumpSerialParams{UpdatedAt: time.Now().UnixMilli(), Zone: s.zone})
	if err != nil {
		return 0, fmt.Errorf("embedded: set %s %s: serial: %w", name, rtype, err)
	}
	return serial, nil
}
