package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/dns-updater/internal/db"
	"lifeboat.dev/services/dns-updater/provider"
	"lifeboat.dev/services/dns-updater/provider/providertest"
	lbsql "lifeboat.dev/sql"
)

const zone = "example.test."

var quiet = slog.New(slog.DiscardHandler)

// zoneFile is the test zone: every kind of answer the server gives has a
// name here. keep is the record providertest wants left alone.
const zoneFile = `$ORIGIN example.test.
$TTL 300
@        IN SOA ns.example.test. hostmaster.example.test. 2024010101 3600 600 604800 60
@        NS    ns
ns       A     127.0.0.1
keep     A     192.0.2.99
www      A     192.0.2.10
v6       AAAA  2001:db8::10
deep.sub A     192.0.2.20
alias    CNAME www
ext      CNAME www.elsewhere.invalid.
loop1    CNAME loop2
loop2    CNAME loop1
txt      TXT   "hello world"
`

// openDB opens the service's store on a real SQLite file in a temporary
// directory, as the service does, with dns-updater's migrations.
func openDB(t testing.TB) *store.DB {
	t.Helper()
	migrations, err := lbsql.Migrations("dns-updater")
	if err != nil {
		t.Fatal(err)
	}
	sdb, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"), store.NewOptions("test", migrations))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sdb.Close() })
	return sdb
}

// write runs fn in a write transaction of sdb.
func write(t testing.TB, sdb *store.DB, fn func(q *db.Queries) error) {
	t.Helper()
	if err := sdb.Update(context.Background(), func(tx *store.Tx) error { return fn(db.New(tx)) }); err != nil {
		t.Fatal(err)
	}
}

func writeZone(t testing.TB, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "example.test.zone")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// start opens and starts a server for the test zone on a free loopback
// port, owning providertest's names.
func start(t testing.TB, sdb *store.DB, zoneText string) *Server {
	t.Helper()
	opts := NewOptions(zone)
	opts.Addr = "127.0.0.1:0"
	opts.ZoneFile = writeZone(t, zoneText)
	opts.Owned = provider.OwnedNames(providertest.Owned(zone)...)
	opts.Logger = quiet
	s, err := Open(context.Background(), sdb, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	providertest.Run(t, func(t *testing.T) provider.Provider { return start(t, openDB(t), zoneFile) }, zone)
}

func exchange(t *testing.T, net, server string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: net, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("%s query %v to %s: %v", net, m.Question, server, err)
	}
	return r
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	return m
}

// rrStrings renders a section compactly: "www.example.test. A 192.0.2.10".
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		f := strings.Fields(rr.String())
		out = append(out, strings.Join(append([]string{f[0]}, f[3:]...), " "))
	}
	return out
}

func TestAnswers(t *testing.T) {
	s := start(t, openDB(t), zoneFile)
	soa := "example.test. SOA ns.example.test. hostmaster.example.test. 2024010101 3600 600 604800 60"
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		aa     bool
		answer []string
		ns     []string
		extra  []string
	}{
		{name: "A", qname: "www.example.test.", qtype: dns.TypeA, aa: true, answer: []string{"www.example.test. A 192.0.2.10"}},
		{name: "case is ignored", qname: "WwW.Example.TEST.", qtype: dns.TypeA, aa: true, answer: []string{"www.example.test. A 192.0.2.10"}},
		{name: "AAAA", qname: "v6.example.test.", qtype: dns.TypeAAAA, aa: true, answer: []string{"v6.example.test. AAAA 2001:db8::10"}},
		{name: "TXT", qname: "txt.example.test.", qtype: dns.TypeTXT, aa: true, answer: []string{`txt.example.test. TXT "hello world"`}},
		{name: "CNAME followed in zone", qname: "alias.example.test.", qtype: dns.TypeA, aa: true,
			answer: []string{"alias.example.test. CNAME www.example.test.", "www.example.test. A 192.0.2.10"}},
		{name: "CNAME asked for", qname: "alias.example.test.", qtype: dns.TypeCNAME, aa: true, answer: []string{"alias.example.test. CNAME www.example.test."}},
		{name: "CNAME out of zone", qname: "ext.example.test.", qtype: dns.TypeA, aa: true, answer: []string{"ext.example.test. CNAME www.elsewhere.invalid."}},
		{name: "CNAME loop ends", qname: "loop1.example.test.", qtype: dns.TypeA, aa: true,
			answer: []string{"loop1.example.test. CNAME loop2.example.test.", "loop2.example.test. CNAME loop1.example.test.",
				"loop1.example.test. CNAME loop2.example.test.", "loop2.example.test. CNAME loop1.example.test.",
				"loop1.example.test. CNAME loop2.example.test.", "loop2.example.test. CNAME loop1.example.test.",
				"loop1.example.test. CNAME loop2.example.test.", "loop2.example.test. CNAME loop1.example.test."}},
		{name: "NODATA", qname: "www.example.test.", qtype: dns.TypeAAAA, aa: true, ns: []string{soa}},
		{name: "empty non-terminal is NODATA", qname: "sub.example.test.", qtype: dns.TypeA, aa: true, ns: []string{soa}},
		{name: "NXDOMAIN", qname: "nope.example.test.", qtype: dns.TypeA, rcode: dns.RcodeNameError, aa: true, ns: []string{soa}},
		{name: "NXDOMAIN below a leaf", qname: "x.www.example.test.", qtype: dns.TypeA, rcode: dns.RcodeNameError, aa: true, ns: []string{soa}},
		{name: "SOA", qname: "example.test.", qtype: dns.TypeSOA, aa: true, answer: []string{soa}},
		{name: "NS with glue", qname: "example.test.", qtype: dns.TypeNS, aa: true,
			answer: []string{"example.test. NS ns.example.test."}, extra: []string{"ns.example.test. A 127.0.0.1"}},
		{name: "outside the zone", qname: "www.example.org.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "parent of the zone", qname: "test.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "zone transfer", qname: "example.test.", qtype: dns.TypeAXFR, rcode: dns.RcodeRefused},
	}
	for _, tc := range tests {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+network, func(t *testing.T) {
				r := exchange(t, network, s.Addr(), query(tc.qname, tc.qtype))
				if r.Rcode != tc.rcode {
					t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if r.Authoritative != tc.aa {
					t.Fatalf("aa = %v, want %v", r.Authoritative, tc.aa)
				}
				if r.RecursionAvailable {
					t.Fatal("ra set by an authoritative-only server")
				}
				if got := rrStrings(r.Answer); !slices.Equal(got, tc.answer) {
					t.Fatalf("answer %q, want %q", got, tc.answer)
				}
				if got := rrStrings(r.Ns); !slices.Equal(got, tc.ns) {
					t.Fatalf("authority %q, want %q", got, tc.ns)
				}
				if got := rrStrings(r.Extra); !slices.Equal(got, tc.extra) {
					t.Fatalf("additional %q, want %q", got, tc.extra)
				}
				for _, rr := range r.Ns {
					// RFC 2308: a negative answer is cached for
					// min(SOA TTL, SOA minimum).
					if rr.Header().Ttl != 60 {
						t.Fatalf("negative SOA TTL %d, want 60", rr.Header().Ttl)
					}
				}
			})
		}
	}
}

func TestRequestsItCannotAnswer(t *testing.T) {
	s := start(t, openDB(t), zoneFile)
	chaos := query("version.bind.", dns.TypeTXT)
	chaos.Question[0].Qclass = dns.ClassCHAOS
	update := new(dns.Msg)
	update.SetUpdate(zone)
	noQuestion := query("www.example.test.", dns.TypeA)
	noQuestion.Question = nil
	twoQuestions := query("www.example.test.", dns.TypeA)
	twoQuestions.Question = append(twoQuestions.Question, twoQuestions.Question[0])
	badVers := query("www.example.test.", dns.TypeA)
	badVers.SetEdns0(1232, false)
	badVers.IsEdns0().SetVersion(1)
	for _, tc := range []struct {
		name  string
		m     *dns.Msg
		rcode int
	}{
		{"CHAOS class", chaos, dns.RcodeRefused},
		{"dynamic update", update, dns.RcodeNotImplemented},
		{"no question", noQuestion, dns.RcodeFormatError},
		{"two questions", twoQuestions, dns.RcodeFormatError},
		{"EDNS version 1", badVers, dns.RcodeBadVers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := exchange(t, "udp", s.Addr(), tc.m)
			if r.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
			}
			if r.Authoritative || len(r.Answer) > 0 {
				t.Fatalf("answered %v (aa=%v) to a request it cannot answer", r.Answer, r.Authoritative)
			}
		})
	}
}

// TestMalformedPackets sends bytes no resolver would send, over UDP and
// TCP, and wants FORMERR where a header could be read, silence otherwise,
// and the server still answering afterwards.
func TestMalformedPackets(t *testing.T) {
	s := start(t, openDB(t), zoneFile)
	good, err := query("www.example.test.", dns.TypeA).Pack()
	if err != nil {
		t.Fatal(err)
	}
	truncatedQuestion := slices.Clone(good[:len(good)-3])
	hugeCounts := slices.Clone(good)
	hugeCounts[6], hugeCounts[7] = 0xff, 0xff // ancount
	badLabel := slices.Clone(good)
	badLabel[12] = 0xc0 // a compression pointer that points at itself
	badLabel[13] = 12
	for _, tc := range []struct {
		name    string
		raw     []byte
		formerr bool
	}{
		{"question cut short", truncatedQuestion, true},
		{"counts larger than the message", hugeCounts, true},
		{"compression loop", badLabel, true},
		{"shorter than a header", []byte{1, 2, 3}, false},
		{"empty", []byte{}, false},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+network, func(t *testing.T) {
				// A reply that must come may take its time; silence is
				// listened for only briefly (it cannot be proved anyway).
				wait := 10 * time.Second
				if !tc.formerr {
					wait = 500 * time.Millisecond
				}
				reply := rawExchange(t, network, s.Addr(), tc.raw, wait)
				if !tc.formerr {
					if reply != nil {
						t.Fatalf("answered %x to a packet without a header", reply)
					}
				} else {
					r := new(dns.Msg)
					if reply == nil {
						t.Fatal("no answer; want FORMERR")
					}
					if err := r.Unpack(reply); err != nil {
						t.Fatalf("unreadable reply %x: %v", reply, err)
					}
					if r.Rcode != dns.RcodeFormatError {
						t.Fatalf("rcode %s, want FORMERR", dns.RcodeToString[r.Rcode])
					}
				}
				// And it still serves.
				if r := exchange(t, network, s.Addr(), query("www.example.test.", dns.TypeA)); len(r.Answer) != 1 {
					t.Fatalf("after a malformed packet: answer %v", r.Answer)
				}
			})
		}
	}
}

// rawExchange sends raw as one DNS message and returns the reply, or nil
// when none comes within wait (the server stays silent to junk).
func rawExchange(t *testing.T, network, addr string, raw []byte, wait time.Duration) []byte {
	t.Helper()
	conn, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(wait))
	c := &dns.Conn{Conn: conn}
	if _, err := c.Write(raw); err != nil {
		t.Fatal(err)
	}
	reply, err := c.ReadMsgHeader(nil)
	if err != nil {
		return nil
	}
	return reply
}

func TestSetBumpsSerialAndPersists(t *testing.T) {
	sqldb := openDB(t)
	s := start(t, sqldb, zoneFile)
	before := serialOf(t, s.Addr())
	if before != 2024010101 {
		t.Fatalf("serial %d, want the zone file's 2024010101", before)
	}
	rs := []provider.Record{{Name: "www.example.test.", Type: "A", Value: "192.0.2.50", TTL: 30}}
	if err := s.Set(t.Context(), rs); err != nil {
		t.Fatal(err)
	}
	if got := serialOf(t, s.Addr()); got != before+1 {
		t.Fatalf("serial after Set %d, want %d", got, before+1)
	}
	z, err := db.New(sqldb.R).GetZone(t.Context(), zone)
	if err != nil || z.Serial != int64(before+1) {
		t.Fatalf("database serial %d (%v), want %d", z.Serial, err, before+1)
	}
	s.Close()

	// Reopened on the same database (a restart), with a zone file the
	// operator has edited meanwhile: lifeboat's record of its owned name
	// stays, the operator's change to a name lifeboat does not own is
	// served, and the serial moves forward again.
	edited := strings.Replace(strings.Replace(zoneFile, "192.0.2.99", "192.0.2.98", 1), "192.0.2.10", "192.0.2.11", 1)
	s2 := start(t, sqldb, edited)
	got, err := s2.Get(t.Context(), "www.example.test", "A")
	if err != nil || !slices.Equal(got, rs) {
		t.Fatalf("after restart, www = %v (%v), want lifeboat's %v", got, err, rs)
	}
	if got, err := s2.Get(t.Context(), "keep.example.test", "A"); err != nil || got[0].Value != "192.0.2.98" {
		t.Fatalf("after restart, keep = %v (%v), want the edited file's 192.0.2.98", got, err)
	}
	if got := serialOf(t, s2.Addr()); got <= before+1 {
		t.Fatalf("serial after reloading the file %d, want more than %d", got, before+1)
	}
}

func serialOf(t *testing.T, addr string) uint32 {
	t.Helper()
	r := exchange(t, "udp", addr, query(zone, dns.TypeSOA))
	if len(r.Answer) != 1 {
		t.Fatalf("SOA answer %v", r.Answer)
	}
	return r.Answer[0].(*dns.SOA).Serial
}

func TestNewZoneWithoutFile(t *testing.T) {
	opts := NewOptions("fresh.test")
	opts.Addr = "127.0.0.1:0"
	opts.Owned = provider.OwnedNames("app.fresh.test")
	opts.Logger = quiet
	s, err := Open(t.Context(), openDB(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	r := exchange(t, "udp", s.Addr(), query("fresh.test.", dns.TypeNS))
	if got := rrStrings(r.Answer); !slices.Equal(got, []string{"fresh.test. NS ns.fresh.test."}) {
		t.Fatalf("NS %q", got)
	}
	if err := s.Set(t.Context(), []provider.Record{{Name: "app.fresh.test", Type: "A", Value: "198.51.100.7", TTL: 60}}); err != nil {
		t.Fatal(err)
	}
	if _, err := provider.Verify(t.Context(), s.Authoritative(), "app.fresh.test", "A", "198.51.100.7", provider.NewVerifyOptions()); err != nil {
		t.Fatal(err)
	}
}

func TestSetRefusesCNAMEBesideData(t *testing.T) {
	s := start(t, openDB(t), zoneFile)
	ctx := t.Context()
	if err := s.Set(ctx, []provider.Record{{Name: "alias.example.test.", Type: "A", Value: "192.0.2.1", TTL: 60}}); !errors.Is(err, provider.ErrInvalidValue) {
		t.Fatalf("A beside a CNAME: %v, want ErrInvalidValue", err)
	}
	if err := s.Set(ctx, []provider.Record{{Name: "www.example.test.", Type: "CNAME", Value: "alias.example.test.", TTL: 60}}); !errors.Is(err, provider.ErrInvalidValue) {
		t.Fatalf("CNAME beside an A: %v, want ErrInvalidValue", err)
	}
	if got, _ := s.Get(ctx, "www.example.test.", "A"); len(got) != 1 || got[0].Value != "192.0.2.10" {
		t.Fatalf("www after refused sets: %v", got)
	}
}

func TestOpenReportsBadZoneFile(t *testing.T) {
	path := writeZone(t, strings.Replace(zoneFile, "192.0.2.20", "192.0.2.x", 1))
	opts := NewOptions(zone)
	opts.ZoneFile = path
	opts.Logger = quiet
	_, err := Open(t.Context(), openDB(t), opts)
	if err == nil {
		t.Fatal("Open loaded a zone file with a bad address")
	}
	for _, want := range []string{path, "line: 9", "192.0.2.x"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
}

func TestZoneFileErrors(t *testing.T) {
	head := "$ORIGIN example.test.\n$TTL 300\n@ SOA ns hostmaster 1 3600 600 604800 60\n@ NS ns\n"
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"syntax", head + "www A 10.0.0.1\nbad A 300.1.1.1\n", []string{"zone.db", "line: 6", "300.1.1.1"}},
		{"unknown type", head + "www BOGUS 10.0.0.1\n", []string{"zone.db", "line: 5", "BOGUS"}},
		{"type not served", head + "@ MX 10 mail\n", []string{"zone.db", "MX", "not served"}},
		{"outside the zone", head + "www.example.org. A 10.0.0.1\n", []string{"www.example.org.", "outside the zone"}},
		{"no SOA", "$ORIGIN example.test.\n$TTL 300\nwww A 10.0.0.1\n", []string{"zone.db", "no SOA"}},
		{"second SOA", head + "@ SOA ns hostmaster 2 3600 600 604800 60\n", []string{"second SOA"}},
		{"SOA away from the origin", head + "sub SOA ns hostmaster 2 3600 600 604800 60\n", []string{"SOA away"}},
		{"delegation", head + "sub NS ns.elsewhere.invalid.\n", []string{"delegations"}},
		{"wildcard", head + "* A 10.0.0.1\n", []string{"wildcards"}},
		{"CNAME beside data", head + "www A 10.0.0.1\nwww CNAME other\n", []string{"www.example.test.", "CNAME"}},
		{"class", head + "www CH A 10.0.0.1\n", []string{"class"}},
		{"include", head + "$INCLUDE /etc/passwd\n", []string{"zone.db", "$INCLUDE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseZone(strings.NewReader(tc.text), "zone.db", zone)
			if err == nil {
				t.Fatal("parsed")
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

func TestZoneFileMergesDuplicatesAndTTLs(t *testing.T) {
	z, err := ParseZone(strings.NewReader(zoneFile+"www 60 A 192.0.2.10\nwww 60 A 192.0.2.12\n"), "zone.db", zone)
	if err != nil {
		t.Fatal(err)
	}
	var www []provider.Record
	for _, r := range z.Records {
		if r.Name == "www.example.test." {
			www = append(www, r)
		}
	}
	want := []provider.Record{{Name: "www.example.test.", Type: "A", Value: "192.0.2.10", TTL: 300}, {Name: "www.example.test.", Type: "A", Value: "192.0.2.12", TTL: 300}}
	if !slices.Equal(www, want) {
		t.Fatalf("www %v, want %v", www, want)
	}
}

func TestStartOnBusyAddress(t *testing.T) {
	s := start(t, openDB(t), zoneFile)
	opts := NewOptions(zone)
	opts.Addr = s.Addr()
	opts.Logger = quiet
	s2, err := Open(t.Context(), openDB(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	err = s2.Start(t.Context())
	if err == nil {
		s2.Close()
		t.Fatal("two servers started on one address")
	}
	if !strings.Contains(err.Error(), s.Addr()) {
		t.Fatalf("error %q does not name the address", err)
	}
}

func TestCloseStopsServing(t *testing.T) {
	s := start(t, openDB(t), zoneFile)
	addr := s.Addr()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.done:
	default:
		t.Fatal("Close returned before the servers stopped")
	}
	c := &dns.Client{Net: "tcp", Timeout: time.Second}
	if _, _, err := c.Exchange(query("www.example.test.", dns.TypeA), addr); err == nil {
		t.Fatal("a closed server answered over TCP")
	}
}

// TestQueriesDuringChanges runs queries and changes at once; under -race
// it shows the serving copy is never torn.
func TestQueriesDuringChanges(t *testing.T) {
	s := start(t, openDB(t), zoneFile)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
			for ctx.Err() == nil {
				r, _, err := c.Exchange(query("www.example.test.", dns.TypeA), s.Addr())
				if err != nil {
					errs <- err
					return
				}
				if len(r.Answer) != 1 || !r.Authoritative {
					errs <- fmt.Errorf("answer %v aa=%v", r.Answer, r.Authoritative)
					return
				}
			}
		})
	}
	for i := range 50 {
		v := fmt.Sprintf("192.0.2.%d", 100+i)
		if err := s.Set(ctx, []provider.Record{{Name: "www.example.test.", Type: "A", Value: v, TTL: 60}}); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := s.Serial(); got != 2024010101+50 {
		t.Fatalf("serial %d after 50 changes, want %d", got, 2024010101+50)
	}
}

func TestSerialWraps(t *testing.T) {
	sqldb := openDB(t)
	s := start(t, sqldb, zoneFile)
	z, err := db.New(sqldb.R).GetZone(t.Context(), zone)
	if err != nil {
		t.Fatal(err)
	}
	write(t, sqldb, func(q *db.Queries) error {
		return q.UpdateZoneSOA(t.Context(), db.UpdateZoneSOAParams{Mname: z.Mname, Rname: z.Rname, Serial: 4294967295, Refresh: z.Refresh,
			Retry: z.Retry, Expire: z.Expire, Minimum: z.Minimum, Ttl: z.Ttl, UpdatedAt: z.UpdatedAt, Zone: zone})
	})
	if err := s.Set(t.Context(), []provider.Record{{Name: "www.example.test.", Type: "A", Value: "192.0.2.1", TTL: 60}}); err != nil {
		t.Fatal(err)
	}
	if got := serialOf(t, s.Addr()); got != 1 {
		t.Fatalf("serial after 2^32-1 is %d, want 1 (RFC 1982)", got)
	}
}

// TestHistoryAndEpochQueries exercises the part of dns-updater's schema
// the service writes (history, epochs) on a real migrated database.
func TestHistoryAndEpochQueries(t *testing.T) {
	sdb := openDB(t)
	q := db.New(sdb.R)
	ctx := t.Context()
	write(t, sdb, func(q *db.Queries) error {
		for i, v := range []string{"192.0.2.1", "192.0.2.2"} {
			if _, err := q.AddHistory(ctx, db.AddHistoryParams{Name: "www.example.test.", Type: "A", Old: "", New: v, Ttl: 60,
				Provider: "embedded", Epoch: int64(i + 1), At: int64(i), VerifiedAfterMs: 12}); err != nil {
				return err
			}
		}
		_, err := q.AddHistory(ctx, db.AddHistoryParams{Name: "api.example.test.", Type: "A", New: "192.0.2.9", Provider: "rfc2136", VerifiedAfterMs: -1})
		return err
	})
	h, err := q.ListHistoryByName(ctx, db.ListHistoryByNameParams{Name: "www.example.test.", Limit: 10})
	if err != nil || len(h) != 2 || h[0].New != "192.0.2.2" || h[0].Epoch != 2 {
		t.Fatalf("history of www, newest first: %+v (%v)", h, err)
	}
	if all, err := q.ListHistory(ctx, 2); err != nil || len(all) != 2 || all[0].Name != "api.example.test." {
		t.Fatalf("ListHistory(2) = %+v (%v)", all, err)
	}

	if _, err := q.GetEpoch(ctx, "wr"); !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("epoch of an instance never applied: %v, want sql.ErrNoRows", err)
	}
	for _, e := range []int64{3, 7} {
		write(t, sdb, func(q *db.Queries) error {
			return q.SetEpoch(ctx, db.SetEpochParams{Instance: "wr", Epoch: e, Name: "wr.example.test.", Address: "192.0.2.1", AppliedAt: e})
		})
	}
	if e, err := q.GetEpoch(ctx, "wr"); err != nil || e.Epoch != 7 {
		t.Fatalf("epoch %+v (%v), want 7", e, err)
	}
}

// TestApplyInTheCallersTransaction: Apply changes the zone in the
// caller's transaction, dated as told, and the server answers it once
// that commits, not before; a rolled back Apply is never served.
func TestApplyInTheCallersTransaction(t *testing.T) {
	sqldb := openDB(t)
	s := start(t, sqldb, zoneFile)
	before := serialOf(t, s.Addr())
	rs := []provider.Record{{Name: "www.example.test.", Type: "A", Value: "192.0.2.60", TTL: 30}}
	at := time.UnixMilli(1_700_000_000_000)
	rolledBack := errors.New("rolled back")
	err := sqldb.Update(t.Context(), func(tx *store.Tx) error {
		if err := s.Apply(t.Context(), tx, rs, at); err != nil {
			return err
		}
		return rolledBack
	})
	if !errors.Is(err, rolledBack) {
		t.Fatal(err)
	}
	if got, _ := s.Get(t.Context(), "www.example.test.", "A"); len(got) == 1 && got[0].Value == "192.0.2.60" {
		t.Fatal("a rolled back Apply is served")
	}
	if err := sqldb.Update(t.Context(), func(tx *store.Tx) error {
		if err := s.Apply(t.Context(), tx, rs, at); err != nil {
			return err
		}
		if got, _ := s.Get(t.Context(), "www.example.test.", "A"); len(got) == 1 && got[0].Value == "192.0.2.60" {
			t.Error("an Apply is served before its transaction commits")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(t.Context(), "www.example.test.", "A"); err != nil || !slices.Equal(got, rs) {
		t.Fatalf("after the commit www = %v (%v), want %v", got, err, rs)
	}
	z, err := db.New(sqldb.R).GetZone(t.Context(), zone)
	if err != nil || z.Serial != int64(before+1) || z.UpdatedAt != at.UnixMilli() {
		t.Fatalf("zone %+v (%v), want serial %d dated %d", z, err, before+1, at.UnixMilli())
	}
	bad := []provider.Record{{Name: "keep.example.test.", Type: "A", Value: "192.0.2.61", TTL: 30}}
	err = sqldb.Update(t.Context(), func(tx *store.Tx) error { return s.Apply(t.Context(), tx, bad, at) })
	if !errors.Is(err, provider.ErrNotOwned) {
		t.Fatalf("Apply of a name not owned: %v, want ErrNotOwned", err)
	}
}

// TestOverlayIsServedUntilTheRecordSetChanges: an overlay is answered in
// place of the database's record set, which it does not change, until a
// change of that record set commits or it is dropped.
func TestOverlayIsServedUntilTheRecordSetChanges(t *testing.T) {
	sqldb := openDB(t)
	s := start(t, sqldb, zoneFile)
	www := "www.example.test."
	orig, err := s.Get(t.Context(), www, "A")
	if err != nil {
		t.Fatal(err)
	}
	over := []provider.Record{{Name: www, Type: "A", Value: "192.0.2.70", TTL: 30}}
	if err := s.Overlay(t.Context(), over); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(t.Context(), www, "A"); err != nil || !slices.Equal(got, over) {
		t.Fatalf("with the overlay www = %v (%v), want %v", got, err, over)
	}
	if rows, err := db.New(sqldb.R).ListRRset(t.Context(), db.ListRRsetParams{Zone: zone, Name: www, Type: "A"}); err != nil || len(rows) != 1 || rows[0].Value != orig[0].Value {
		t.Fatalf("the database holds %+v (%v); an overlay writes nothing", rows, err)
	}
	if err := s.DropOverlay(t.Context(), www, "A"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(t.Context(), www, "A"); !slices.Equal(got, orig) {
		t.Fatalf("after DropOverlay www = %v, want %v", got, orig)
	}
	if err := s.Overlay(t.Context(), over); err != nil {
		t.Fatal(err)
	}
	set := []provider.Record{{Name: www, Type: "A", Value: "192.0.2.71", TTL: 30}}
	if err := sqldb.Update(t.Context(), func(tx *store.Tx) error { return s.Apply(t.Context(), tx, set, time.Now()) }); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(t.Context(), www, "A"); !slices.Equal(got, set) {
		t.Fatalf("after an Apply www = %v, want %v: a committed change replaces the overlay", got, set)
	}
	if err := s.Overlay(t.Context(), []provider.Record{{Name: "keep.example.test.", Type: "A", Value: "192.0.2.72", TTL: 30}}); !errors.Is(err, provider.ErrNotOwned) {
		t.Fatalf("Overlay of a name not owned: %v, want ErrNotOwned", err)
	}
}
