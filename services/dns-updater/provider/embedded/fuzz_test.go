package embedded

import (
	"context"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"lifeboat.dev/services/dns-updater/provider"
)

// FuzzAnswer feeds arbitrary bytes to the query handler the way the server
// does: whatever unpacks as a DNS message is answered, and the answer must
// always pack, carry the request's id, and claim authority only inside the
// zone. (Bytes that do not unpack get FORMERR from miekg/dns before the
// handler; TestMalformedPackets covers that path.)
func FuzzAnswer(f *testing.F) {
	opts := NewOptions(zone)
	opts.ZoneFile = writeZone(f, zoneFile)
	opts.Logger = quiet
	s, err := Open(context.Background(), openDB(f), opts)
	if err != nil {
		f.Fatal(err)
	}
	seed := func(m *dns.Msg) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"www.example.test.", dns.TypeA}, {"alias.example.test.", dns.TypeA}, {"loop1.example.test.", dns.TypeAAAA},
		{"sub.example.test.", dns.TypeTXT}, {"example.test.", dns.TypeANY}, {"example.test.", dns.TypeNS},
		{"nope.example.test.", dns.TypeA}, {"example.org.", dns.TypeA}, {".", dns.TypeSOA}, {"example.test.", dns.TypeOPT},
	} {
		seed(query(q.name, q.qtype))
		m := query(q.name, q.qtype)
		m.SetEdns0(4096, true)
		seed(m)
	}
	update := new(dns.Msg)
	update.SetUpdate(zone)
	update.Insert([]dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "www.example.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}}})
	seed(update)
	f.Fuzz(func(t *testing.T, raw []byte) {
		req := new(dns.Msg)
		if err := req.Unpack(raw); err != nil {
			return
		}
		resp := s.answer(req)
		if req.Response {
			if resp != nil {
				t.Fatalf("answered a response: %v", resp)
			}
			return
		}
		if resp == nil {
			t.Fatalf("no answer to %v", req)
		}
		if _, err := resp.Pack(); err != nil {
			t.Fatalf("answer to %v does not pack: %v\n%v", req, err, resp)
		}
		if resp.Id != req.Id || !resp.Response {
			t.Fatalf("answer id %d qr=%v to request %d", resp.Id, resp.Response, req.Id)
		}
		if len(req.Question) != 1 && req.Opcode == dns.OpcodeQuery && resp.Rcode != dns.RcodeFormatError && resp.Rcode != dns.RcodeBadVers {
			t.Fatalf("%d questions answered %s, want FORMERR", len(req.Question), dns.RcodeToString[resp.Rcode])
		}
		if resp.Authoritative && !provider.InZone(resp.Question[0].Name, zone) {
			t.Fatalf("authoritative answer for %q outside the zone", resp.Question[0].Name)
		}
	})
}

// FuzzParseZone feeds arbitrary master files to the zone parser: it either
// refuses with an error or returns a zone the server can serve.
func FuzzParseZone(f *testing.F) {
	f.Add(zoneFile)
	f.Add("$ORIGIN example.test.\n@ SOA ns hm 1 2 3 4 5\nwww A 10.0.0.1\n")
	f.Add("@ SOA ns hm 1 2 3 4 5\n@ NS ns.example.test.\nx TXT \"a\" \"b\"\ny CNAME x\n")
	f.Add("$TTL 1h\n@ IN SOA ( ns hm 1 2 3 4 5 ) ; comment\nv6 AAAA ::1\n")
	f.Fuzz(func(t *testing.T, text string) {
		z, err := ParseZone(strings.NewReader(text), "fuzz.zone", zone)
		if err != nil {
			return
		}
		if z.SOA == nil {
			t.Fatal("zone without SOA accepted")
		}
		for _, r := range z.Records {
			if !provider.InZone(r.Name, zone) {
				t.Fatalf("record outside the zone accepted: %v", r)
			}
			if _, err := provider.NewRR(r); err != nil {
				t.Fatalf("accepted record cannot be served: %v: %v", r, err)
			}
		}
	})
}
