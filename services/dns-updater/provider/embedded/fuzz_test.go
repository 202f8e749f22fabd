package embedded

import (
	"context"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"lifeboat.dev/services/dns-updater/provider"
)

// FuzzAnswer feeds arbitrary bytes to the query handler the way the server
// does: whatever unpacks as a DNS message is answered, and the answer must
// always pack, carry the request's id, and claim authority only inside the
// zone. (Bytes that do not unpack get FORMERR from miekg/dns before the
// handler; FuzzServe and TestMalformedPackets cover that path, through a
// running server.)
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

// FuzzServe sends arbitrary bytes to a running server over UDP, as a
// broken or hostile client would, so that they meet everything a packet
// meets: miekg/dns's header read, accept, unpacking (FORMERR when it
// fails), ServeDNS, truncation and packing. After each packet the server
// must still answer a good query, every reply must unpack as a response
// to the packet's id, and the reply's code must be the one the handler
// promises: NOTIMP for another opcode, FORMERR for a header no resolver
// sends or a message that does not unpack, otherwise what answer gives.
func FuzzServe(f *testing.F) {
	s := start(f, openDB(f), zoneFile)
	addr := s.Addr()
	seed := func(m *dns.Msg) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	good := query("www.example.test.", dns.TypeA)
	seed(good)
	big := query("example.test.", dns.TypeANY)
	seed(big)
	edns := query("txt.example.test.", dns.TypeTXT)
	edns.SetEdns0(512, true)
	seed(edns)
	badVers := query("www.example.test.", dns.TypeA)
	badVers.SetEdns0(1232, false)
	badVers.IsEdns0().SetVersion(1)
	seed(badVers)
	update := new(dns.Msg)
	update.SetUpdate(zone)
	seed(update)
	raw, _ := good.Pack()
	f.Add(raw[:len(raw)-3])                                 // question cut short
	f.Add(append(raw[:12:12], 0xc0, 12))                    // compression pointer to itself
	f.Add([]byte{0, 1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0}) // 65535 questions promised
	f.Add([]byte{1, 2, 3})

	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > ednsSize {
			return // the server reads at most ednsSize bytes of a datagram
		}
		want, replies := expectedRcode(s, raw)
		conn, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Silence is not an error for junk, so the only bound here is on
		// how long a live server may take to answer the probe.
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		c := &dns.Conn{Conn: conn}
		if _, err := c.Write(raw); err != nil {
			t.Fatal(err)
		}
		var id uint16
		if len(raw) >= 2 {
			id = binary.BigEndian.Uint16(raw)
		}
		probe := query("www.example.test.", dns.TypeA)
		probe.Id = id ^ 0x5a5a
		if err := c.WriteMsg(probe); err != nil {
			t.Fatal(err)
		}
		var gotProbe, gotReply bool
		for !gotProbe || (replies && !gotReply) {
			b, err := c.ReadMsgHeader(nil)
			if err != nil {
				t.Fatalf("after %x (want reply %v, rcode %s): the server stopped answering: probe answered %v, packet answered %v: %v",
					raw, replies, dns.RcodeToString[want], gotProbe, gotReply, err)
			}
			r := new(dns.Msg)
			if err := r.Unpack(b); err != nil {
				t.Fatalf("reply %x to %x does not unpack: %v", b, raw, err)
			}
			if !r.Response {
				t.Fatalf("reply %v to %x is not a response", r, raw)
			}
			switch {
			case r.Id == probe.Id && len(r.Answer) == 1 && r.Rcode == dns.RcodeSuccess:
				gotProbe = true
			case r.Id == id && replies && !gotReply:
				gotReply = true
				if r.Rcode != want {
					t.Fatalf("reply to %x has rcode %s, want %s:\n%v", raw, dns.RcodeToString[r.Rcode], dns.RcodeToString[want], r)
				}
			default:
				t.Fatalf("unexpected reply to %x (want reply %v): %v", raw, replies, r)
			}
		}
	})
}

// expectedRcode says whether the server answers raw and with which
// response code, following the path a datagram takes through miekg/dns
// and the handler.
func expectedRcode(s *Server, raw []byte) (rcode int, replies bool) {
	if len(raw) < 12 {
		return 0, false // no header: dropped
	}
	dh := dns.Header{Id: binary.BigEndian.Uint16(raw), Bits: binary.BigEndian.Uint16(raw[2:]),
		Qdcount: binary.BigEndian.Uint16(raw[4:]), Ancount: binary.BigEndian.Uint16(raw[6:]),
		Nscount: binary.BigEndian.Uint16(raw[8:]), Arcount: binary.BigEndian.Uint16(raw[10:])}
	switch accept(dh) {
	case dns.MsgIgnore:
		return 0, false
	case dns.MsgRejectNotImplemented:
		return dns.RcodeNotImplemented, true
	case dns.MsgReject:
		return dns.RcodeFormatError, true
	}
	req := new(dns.Msg)
	if err := req.Unpack(raw); err != nil {
		return dns.RcodeFormatError, true
	}
	m := s.answer(req)
	if m == nil {
		return 0, false
	}
	return m.Rcode, true
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
