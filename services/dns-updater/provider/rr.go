package provider

import (
	"fmt"
	"net"
	"strings"

	"github.com/miekg/dns"
)

// NewRR converts r, which Validate accepted (or an NS record), into the
// miekg/dns resource record sent on the wire. TXT text longer than 255
// bytes is split into several character strings, as DNS requires.
func NewRR(r Record) (dns.RR, error) {
	hdr := dns.RR_Header{Name: CanonicalName(r.Name), Class: dns.ClassINET, Ttl: r.TTL}
	switch strings.ToUpper(r.Type) {
	case "A":
		ip := net.ParseIP(r.Value).To4()
		if ip == nil {
			return nil, fmt.Errorf("%w: A record %s: %q is not an IPv4 address", ErrInvalidValue, hdr.Name, r.Value)
		}
		hdr.Rrtype = dns.TypeA
		return &dns.A{Hdr: hdr, A: ip}, nil
	case "AAAA":
		ip := net.ParseIP(r.Value)
		if ip == nil || ip.To4() != nil {
			return nil, fmt.Errorf("%w: AAAA record %s: %q is not an IPv6 address", ErrInvalidValue, hdr.Name, r.Value)
		}
		hdr.Rrtype = dns.TypeAAAA
		return &dns.AAAA{Hdr: hdr, AAAA: ip}, nil
	case "CNAME":
		hdr.Rrtype = dns.TypeCNAME
		return &dns.CNAME{Hdr: hdr, Target: CanonicalName(r.Value)}, nil
	case "NS":
		hdr.Rrtype = dns.TypeNS
		return &dns.NS{Hdr: hdr, Ns: CanonicalName(r.Value)}, nil
	case "TXT":
		hdr.Rrtype = dns.TypeTXT
		return &dns.TXT{Hdr: hdr, Txt: splitTXT(r.Value)}, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnsupportedType, r.Type)
}

// RecordOf converts a resource record of a type a provider handles (A,
// AAAA, CNAME, TXT, NS) into a Record; ok is false for any other type.
func RecordOf(rr dns.RR) (r Record, ok bool) {
	h := rr.Header()
	r = Record{Name: CanonicalName(h.Name), Type: dns.TypeToString[h.Rrtype], TTL: h.Ttl}
	switch v := rr.(type) {
	case *dns.A:
		r.Value = v.A.String()
	case *dns.AAAA:
		r.Value = v.AAAA.String()
	case *dns.CNAME:
		r.Value = CanonicalName(v.Target)
	case *dns.NS:
		r.Value = CanonicalName(v.Ns)
	case *dns.TXT:
		r.Value = strings.Join(v.Txt, "")
	default:
		return Record{}, false
	}
	return r, true
}

// splitTXT cuts text into DNS character strings of at most 255 bytes.
func splitTXT(text string) []string {
	if text == "" {
		return []string{""}
	}
	var out []string
	for len(text) > 255 {
		out = append(out, text[:255])
		text = text[255:]
	}
	return append(out, text)
}
