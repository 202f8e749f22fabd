package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/miekg/dns"

	"lifeboat.dev/services/dns-updater/internal/db"
	"lifeboat.dev/services/dns-updater/provider"
)

// ednsSize is the UDP payload size the server advertises and answers up
// to: the DNS flag day 2020 value, which avoids IP fragmentation.
const ednsSize = 1232

// snapshot is the zone as served: immutable once built, swapped whole.
type snapshot struct {
	zone   string
	soa    *dns.SOA
	negSOA *dns.SOA                       // the SOA for negative answers (RFC 2308 TTL)
	rrsets map[string]map[uint16][]dns.RR // name → type → records
	exists map[string]bool                // names with records, and the empty non-terminals above them
}

func newSnapshot(z db.DnsZone, rows []db.DnsRecord) (*snapshot, error) {
	s := &snapshot{zone: z.Zone, rrsets: map[string]map[uint16][]dns.RR{}, exists: map[string]bool{}}
	s.soa = &dns.SOA{Hdr: dns.RR_Header{Name: z.Zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: uint32(z.Ttl)},
		Ns: z.Mname, Mbox: z.Rname, Serial: uint32(z.Serial), Refresh: uint32(z.Refresh), Retry: uint32(z.Retry),
		Expire: uint32(z.Expire), Minttl: uint32(z.Minimum)}
	neg := *s.soa
	neg.Hdr.Ttl = min(s.soa.Hdr.Ttl, s.soa.Minttl)
	s.negSOA = &neg
	s.add(s.soa)
	for _, r := range rows {
		rr, err := provider.NewRR(provider.Record{Name: r.Name, Type: r.Type, Value: r.Value, TTL: uint32(r.Ttl)})
		if err != nil {
			return nil, fmt.Errorf("zone %s in the database: %w", z.Zone, err)
		}
		s.add(rr)
	}
	return s, nil
}

func (s *snapshot) add(rr dns.RR) {
	h := rr.Header()
	if s.rrsets[h.Name] == nil {
		s.rrsets[h.Name] = map[uint16][]dns.RR{}
	}
	s.rrsets[h.Name][h.Rrtype] = append(s.rrsets[h.Name][h.Rrtype], rr)
	// A name exists when it or a name below it has records (RFC 4592's
	// empty non-terminals answer NODATA, not NXDOMAIN).
	for name := h.Name; dns.IsSubDomain(s.zone, name); {
		if s.exists[name] {
			break
		}
		s.exists[name] = true
		i, end := dns.NextLabel(name, 0)
		if end {
			break
		}
		name = name[i:]
	}
}

// accept screens a message by its header before it is unpacked: responses
// are dropped (answering them could start a loop), anything but a query is
// NOTIMP, and a query whose counts no resolver sends (not one question,
// answer or authority records, more additional records than an OPT and a
// TSIG) is FORMERR. miekg/dns unpacks leniently, so this is where a header
// that promises more records than the message holds is caught.
func accept(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	switch {
	case dh.Bits&qr != 0:
		return dns.MsgIgnore
	case int(dh.Bits>>11)&0xF != dns.OpcodeQuery:
		return dns.MsgRejectNotImplemented
	case dh.Qdcount != 1 || dh.Ancount != 0 || dh.Nscount != 0 || dh.Arcount > 2:
		return dns.MsgReject
	}
	return dns.MsgAccept
}

// ServeDNS answers one query: miekg/dns calls it for each message it could
// unpack (the ones it cannot get FORMERR from miekg/dns itself).
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := s.answer(req)
	if m == nil {
		return
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(dns.MinMsgSize, min(int(opt.UDPSize()), ednsSize))
		}
		m.Truncate(size)
	}
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("dns answer not sent", slog.String("to", w.RemoteAddr().String()), slog.Any("err", err))
	}
}

// answer builds the response to req, or nil when req is itself a response.
// It never fails: whatever the request holds, the result packs.
func (s *Server) answer(req *dns.Msg) *dns.Msg {
	if req.Response {
		return nil
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.Compress = true
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(ednsSize, false)
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return m
		}
	}
	switch {
	case req.Opcode != dns.OpcodeQuery:
		m.Rcode = dns.RcodeNotImplemented
		return m
	case len(req.Question) != 1:
		m.Question = nil
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := req.Question[0]
	name := provider.CanonicalName(q.Name)
	snap := s.snap.Load()
	switch {
	case q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY:
		m.Rcode = dns.RcodeRefused
		return m
	case !dns.IsSubDomain(snap.zone, name):
		// Not ours: an authoritative-only server refuses rather than
		// pointing elsewhere.
		m.Rcode = dns.RcodeRefused
		return m
	case q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR:
		m.Rcode = dns.RcodeRefused // no zone transfers
		return m
	case q.Qtype == dns.TypeOPT || q.Qtype == dns.TypeTSIG || q.Qtype == dns.TypeTKEY:
		m.Rcode = dns.RcodeFormatError // meta types are not questions (RFC 6895)
		return m
	}
	m.Authoritative = true
	snap.resolve(m, name, q.Qtype)
	return m
}

// resolve fills m's sections for name and qtype, following CNAMEs within
// the zone (RFC 1034 4.3.2).
func (s *snapshot) resolve(m *dns.Msg, name string, qtype uint16) {
	const maxChain = 8
	for range maxChain {
		sets, ok := s.rrsets[name]
		if !ok {
			if !s.exists[name] {
				m.Rcode = dns.RcodeNameError
			}
			m.Ns = append(m.Ns, s.negSOA)
			return
		}
		if qtype == dns.TypeANY {
			for _, rrs := range sets {
				m.Answer = append(m.Answer, rrs...)
			}
			return
		}
		if rrs := sets[qtype]; len(rrs) > 0 {
			m.Answer = append(m.Answer, rrs...)
			if qtype == dns.TypeNS {
				s.glue(m, rrs)
			}
			return
		}
		cname := sets[dns.TypeCNAME]
		if len(cname) == 0 {
			m.Ns = append(m.Ns, s.negSOA) // NODATA
			return
		}
		m.Answer = append(m.Answer, cname...)
		name = cname[0].(*dns.CNAME).Target
		if !dns.IsSubDomain(s.zone, name) {
			return // the resolver follows it elsewhere
		}
	}
	// A chain longer than maxChain is a loop or a mistake; the answer
	// holds what was followed.
}

// glue adds the addresses of in-zone name servers to the additional
// section.
func (s *snapshot) glue(m *dns.Msg, ns []dns.RR) {
	for _, rr := range ns {
		sets := s.rrsets[rr.(*dns.NS).Ns]
		m.Extra = append(m.Extra, sets[dns.TypeA]...)
		m.Extra = append(m.Extra, sets[dns.TypeAAAA]...)
	}
}

// Start listens on opts.Addr over UDP and TCP (the same port) and serves
// until Close. It returns once both listeners are up, or the reason one
// could not be opened.
func (s *Server) Start(ctx context.Context) error {
	if s.udp != nil {
		return errors.New("embedded: already started")
	}
	pc, ln, err := listen(ctx, s.opts.Addr)
	if err != nil {
		return fmt.Errorf("embedded: listen on %s: %w (choose another address with dns.embedded.listen, or free the port)", s.opts.Addr, err)
	}
	s.addr.Store(pc.LocalAddr().String())
	s.udp = &dns.Server{PacketConn: pc, Handler: s, MsgAcceptFunc: accept, UDPSize: ednsSize}
	s.tcp = &dns.Server{Listener: ln, Handler: s, MsgAcceptFunc: accept, ReadTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }}
	started := make(chan struct{}, 2)
	s.udp.NotifyStartedFunc = func() { started <- struct{}{} }
	s.tcp.NotifyStartedFunc = func() { started <- struct{}{} }
	errs := make(chan error, 2)
	s.done = make(chan struct{})
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		go func() { errs <- srv.ActivateAndServe() }()
	}
	go func() {
		for range 2 {
			if err := <-errs; err != nil {
				s.log.Error("dns server stopped", slog.Any("err", err))
			}
		}
		close(s.done)
	}()
	for range 2 {
		select {
		case <-started:
		case <-s.done:
			return errors.New("embedded: dns server stopped while starting")
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		}
	}
	s.log.Info("dns server listening", slog.String("addr", s.Addr()))
	return nil
}

// listen opens UDP and TCP on addr, on the same port; with port 0 it tries
// a few free UDP ports until TCP is also free on one.
func listen(ctx context.Context, addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	var lc net.ListenConfig
	for attempt := 0; ; attempt++ {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, err
		}
		p := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
		ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(host, p))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || attempt >= 10 {
			return nil, nil, err
		}
	}
}

// Addr returns the address the server listens on once started, and
// opts.Addr before.
func (s *Server) Addr() string {
	if a, ok := s.addr.Load().(string); ok {
		return a
	}
	return s.opts.Addr
}

// Close stops serving and waits until both listeners have returned. The
// database stays open: it belongs to the caller.
func (s *Server) Close() error {
	if s.udp == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := errors.Join(s.udp.ShutdownContext(ctx), s.tcp.ShutdownContext(ctx))
	select {
	case <-s.done:
	case <-ctx.Done():
	}
	return err
}
