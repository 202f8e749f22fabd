package embedded

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/miekg/dns"

	"lifeboat.dev/services/dns-updater/provider"
)

// Zone is a zone as a master file describes it: its SOA and its other
// records (NS, A, AAAA, CNAME, TXT).
type Zone struct {
	Origin  string
	SOA     *dns.SOA
	Records []provider.Record
}

// LoadZoneFile reads the RFC 1035 master file at path for the zone origin.
// See ParseZone.
func LoadZoneFile(path, origin string) (*Zone, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("zone file: %w", err)
	}
	defer f.Close()
	return ParseZone(f, path, origin)
}

// ParseZone parses an RFC 1035 master file for the zone origin, as miekg/dns
// reads it ($ORIGIN, $TTL, relative names; $INCLUDE is not allowed). A
// syntax error names the file, the line and column, and the token at
// fault. The zone must hold exactly one SOA, at the origin; NS records
// only at the origin (delegations are not served); only the types the
// embedded server serves; no wildcard; no name outside the zone; no CNAME
// beside other data. Such an error quotes the record at fault.
func ParseZone(r io.Reader, file, origin string) (*Zone, error) {
	origin = provider.CanonicalName(origin)
	if _, ok := dns.IsDomainName(origin); !ok || origin == "" {
		return nil, fmt.Errorf("zone file %s: zone %q is not a domain name", file, origin)
	}
	z := &Zone{Origin: origin}
	zp := dns.NewZoneParser(r, origin, file)
	zp.SetDefaultTTL(3600)
	types := map[string]map[string]bool{} // name → types present
	bad := func(rr dns.RR, format string, args ...any) error {
		return fmt.Errorf("zone file %s: record %q: %s", file, strings.ReplaceAll(rr.String(), "\t", " "), fmt.Sprintf(format, args...))
	}
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		h := rr.Header()
		name := provider.CanonicalName(h.Name)
		if h.Class != dns.ClassINET {
			return nil, bad(rr, "class %s (only IN is served)", dns.ClassToString[h.Class])
		}
		if !dns.IsSubDomain(origin, name) {
			return nil, bad(rr, "name is outside the zone %s", origin)
		}
		if strings.HasPrefix(name, "*.") {
			return nil, bad(rr, "wildcards are not served")
		}
		if types[name] == nil {
			types[name] = map[string]bool{}
		}
		types[name][dns.TypeToString[h.Rrtype]] = true
		if soa, isSOA := rr.(*dns.SOA); isSOA {
			switch {
			case name != origin:
				return nil, bad(rr, "SOA away from the zone's origin %s", origin)
			case z.SOA != nil:
				return nil, bad(rr, "second SOA (a zone has one)")
			}
			z.SOA = soa
			continue
		}
		rec, supported := provider.RecordOf(rr)
		if !supported {
			return nil, bad(rr, "type %s is not served (use SOA, NS, A, AAAA, CNAME, TXT)", dns.TypeToString[h.Rrtype])
		}
		if rec.Type == "NS" {
			if name != origin {
				return nil, bad(rr, "NS below the origin: delegations are not served")
			}
			if _, ok := dns.IsDomainName(rec.Value); !ok || rec.Value == "" {
				return nil, bad(rr, "name server %q is not a domain name", rec.Value)
			}
		} else if _, err := provider.Validate(origin, rec); err != nil {
			return nil, bad(rr, "%v", err)
		}
		z.Records = append(z.Records, rec)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("zone file: %w", err)
	}
	if z.SOA == nil {
		return nil, fmt.Errorf("zone file %s: no SOA record for %s (add one at the origin)", file, origin)
	}
	for name, ts := range types {
		if ts["CNAME"] && len(ts) > 1 {
			return nil, fmt.Errorf("zone file %s: %s has a CNAME and other records (a CNAME must be alone at its name)", file, name)
		}
	}
	// As BIND does: a record given twice is one record, and an RRset has
	// the TTL of its first record.
	type key struct{ name, rtype string }
	ttl := map[key]uint32{}
	seen := map[provider.Record]bool{}
	out := z.Records[:0]
	for _, r := range z.Records {
		k := key{r.Name, r.Type}
		if t, ok := ttl[k]; ok {
			r.TTL = t
		} else {
			ttl[k] = r.TTL
		}
		if seen[r] {
			continue
		}
		if r.Type == "CNAME" && seen[provider.Record{Name: r.Name, Type: "CNAME", Value: "", TTL: 0}] {
			return nil, fmt.Errorf("zone file %s: %s has more than one CNAME", file, r.Name)
		}
		seen[r] = true
		if r.Type == "CNAME" {
			seen[provider.Record{Name: r.Name, Type: "CNAME"}] = true
		}
		out = append(out, r)
	}
	z.Records = out
	return z, nil
}
