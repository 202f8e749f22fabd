// Package provider is the one interface dns-updater changes DNS records
// through, with the validation, ownership and error vocabulary every
// provider shares. Each kind of DNS service is its own package implementing
// Provider: embedded (lifeboat's own authoritative server), rfc2136 (dynamic
// update signed with TSIG, for BIND, Knot and PowerDNS) and infoblox (WAPI).
// providertest holds the conformance test all of them pass.
package provider

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// Record is one value of an RRset. Name is a fully qualified domain name
// (a trailing dot is added when missing); Type is A, AAAA, CNAME or TXT;
// Value is an address for A and AAAA, a domain name for CNAME and the text
// for TXT.
type Record struct {
	Name  string
	Type  string
	Value string
	TTL   uint32
}

// String prints the record in zone-file order: "www.example.com. 300 A 192.0.2.1".
func (r Record) String() string {
	return fmt.Sprintf("%s %d %s %s", r.Name, r.TTL, r.Type, r.Value)
}

// Provider changes and reads the records of one zone at one DNS service.
type Provider interface {
	// Name names the kind of provider ("embedded", "rfc2136", "infoblox");
	// it is what DNSRecordUpdated and DNSUpdateFailed report.
	Name() string
	// Get returns the current record set of name and type, sorted by value;
	// ErrNotFound when the zone holds none.
	Get(ctx context.Context, name, rtype string) ([]Record, error)
	// Set replaces the record set of the records' name and type with rs,
	// without prerequisites: whatever the set held before is gone. All of rs
	// share one name, type and TTL. A name outside the zone (ErrOutsideZone),
	// a value that does not fit the type (ErrInvalidValue) or a name the
	// provider does not own (ErrNotOwned) is refused before anything is sent.
	Set(ctx context.Context, rs []Record) error
	// Authoritative returns the addresses (host:port) of the zone's
	// authoritative servers, to Verify a change against.
	Authoritative() []string
}

// Sentinel errors callers branch on. Errors returned by providers wrap them
// and say which value was at fault.
var (
	// ErrNotFound: the zone holds no record of that name and type.
	ErrNotFound = errors.New("no such record")
	// ErrOutsideZone: the name is not in the provider's zone.
	ErrOutsideZone = errors.New("name outside the zone")
	// ErrInvalidValue: the value does not fit the type (an A record whose
	// value is not an IPv4 address, for instance), or the set is malformed.
	ErrInvalidValue = errors.New("invalid record")
	// ErrUnsupportedType: the provider cannot manage records of that type.
	ErrUnsupportedType = errors.New("record type not supported")
	// ErrNotOwned: lifeboat was not told it owns the name, so it leaves the
	// record alone.
	ErrNotOwned = errors.New("name not owned by lifeboat")
	// ErrNotVerified: the authoritative servers did not answer the expected
	// value in time.
	ErrNotVerified = errors.New("not verified")
)

// Types are the record types a provider may be asked to set.
var Types = []string{"A", "AAAA", "CNAME", "TXT"}

// CanonicalName returns name in the form records are compared in: lower
// case and fully qualified (trailing dot). Surrounding spaces are dropped.
func CanonicalName(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" {
		return ""
	}
	return dns.Fqdn(name)
}

// CheckZone returns zone canonicalised, or an error saying it is not a
// domain name; providers check their configured zone with it.
func CheckZone(zone string) (string, error) {
	z := CanonicalName(zone)
	if _, ok := dns.IsDomainName(z); !ok || z == "" || z == "." {
		return "", fmt.Errorf("zone %q is not a domain name (write it like example.com.)", zone)
	}
	return z, nil
}

// InZone reports whether name is zone or below it. Both may be given with
// or without a trailing dot, in any case.
func InZone(name, zone string) bool {
	name, zone = CanonicalName(name), CanonicalName(zone)
	if name == "" || zone == "" {
		return false
	}
	return dns.IsSubDomain(zone, name)
}

// Validate checks one record against zone before anything is sent: a valid
// name inside the zone, a supported type, and a value that fits the type.
// It returns r canonicalised (name lower case and fully qualified, type
// upper case, addresses in their canonical text, CNAME targets fully
// qualified). The error wraps ErrOutsideZone, ErrUnsupportedType or
// ErrInvalidValue and quotes the offending value.
func Validate(zone string, r Record) (Record, error) {
	name := CanonicalName(r.Name)
	if !isHostname(name) {
		return r, fmt.Errorf("%w: name %q is not a domain name (letters, digits, '-' and '_' in dot-separated labels)", ErrInvalidValue, r.Name)
	}
	if !InZone(name, zone) {
		return r, fmt.Errorf("%w: %q is not in zone %q", ErrOutsideZone, r.Name, CanonicalName(zone))
	}
	r.Name = name
	r.Type = strings.ToUpper(strings.TrimSpace(r.Type))
	switch r.Type {
	case "A", "AAAA":
		addr, err := netip.ParseAddr(strings.TrimSpace(r.Value))
		if err != nil || addr.Zone() != "" {
			return r, fmt.Errorf("%w: %s record %s: %q is not an IP address", ErrInvalidValue, r.Type, name, r.Value)
		}
		if r.Type == "A" && !addr.Is4() {
			return r, fmt.Errorf("%w: A record %s: %q is not an IPv4 address (use AAAA for IPv6)", ErrInvalidValue, name, r.Value)
		}
		if r.Type == "AAAA" && (!addr.Is6() || addr.Is4In6()) {
			return r, fmt.Errorf("%w: AAAA record %s: %q is not an IPv6 address (use A for IPv4)", ErrInvalidValue, name, r.Value)
		}
		r.Value = addr.String()
	case "CNAME":
		target := CanonicalName(r.Value)
		if !isHostname(target) {
			return r, fmt.Errorf("%w: CNAME record %s: %q is not a domain name", ErrInvalidValue, name, r.Value)
		}
		if target == name {
			return r, fmt.Errorf("%w: CNAME record %s: %q points at itself", ErrInvalidValue, name, r.Value)
		}
		r.Value = target
	case "TXT":
		// A TXT value is sent as character strings of at most 255 bytes
		// each; a whole RR must fit in a 64 KiB message.
		if len(r.Value) > 4000 {
			return r, fmt.Errorf("%w: TXT record %s: text of %d bytes is longer than 4000", ErrInvalidValue, name, len(r.Value))
		}
		// Printable ASCII without quote or backslash reads and compares the
		// same at every provider (zone-file escaping, JSON, the wire).
		if i := strings.IndexFunc(r.Value, func(c rune) bool { return c < 0x20 || c > 0x7e || c == '"' || c == '\\' }); i >= 0 {
			return r, fmt.Errorf("%w: TXT record %s: %q holds %q at byte %d (use printable ASCII without quote or backslash)", ErrInvalidValue, name, r.Value, r.Value[i:i+1], i)
		}
	default:
		return r, fmt.Errorf("%w: %q (use one of %s)", ErrUnsupportedType, r.Type, strings.Join(Types, ", "))
	}
	return r, nil
}

// isHostname reports whether name (canonical, fully qualified) is a domain
// name made of letters, digits, '-' and '_' (for names like
// _acme-challenge), the names lifeboat manages. Other bytes are legal in
// DNS but read differently in zone files, JSON and vendor APIs.
func isHostname(name string) bool {
	if _, ok := dns.IsDomainName(name); !ok || name == "" {
		return false
	}
	if name == "." {
		return true
	}
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if label == "" {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// ValidateSet checks a record set for Set: not empty, one name, type and
// TTL, every record valid in zone (see Validate), no value twice, and the
// name owned. It returns the set canonicalised and sorted by value.
func ValidateSet(zone string, owned Owned, rs []Record) ([]Record, error) {
	if len(rs) == 0 {
		return nil, fmt.Errorf("%w: empty record set (give at least one record)", ErrInvalidValue)
	}
	out := make([]Record, 0, len(rs))
	for i, r := range rs {
		v, err := Validate(zone, r)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			first := out[0]
			if v.Name != first.Name || v.Type != first.Type {
				return nil, fmt.Errorf("%w: one set holds %s %s and %s %s (set one name and type at a time)", ErrInvalidValue, first.Name, first.Type, v.Name, v.Type)
			}
			if v.TTL != first.TTL {
				return nil, fmt.Errorf("%w: %s %s has TTLs %d and %d (an RRset has one TTL)", ErrInvalidValue, v.Name, v.Type, first.TTL, v.TTL)
			}
		}
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b Record) int { return strings.Compare(a.Value, b.Value) })
	for i := 1; i < len(out); i++ {
		if out[i].Value == out[i-1].Value {
			return nil, fmt.Errorf("%w: %s %s holds %q twice", ErrInvalidValue, out[i].Name, out[i].Type, out[i].Value)
		}
	}
	if out[0].Type == "CNAME" && len(out) > 1 {
		return nil, fmt.Errorf("%w: %s has %d CNAME records (a name has at most one)", ErrInvalidValue, out[0].Name, len(out))
	}
	if !owned.Owns(out[0].Name) {
		return nil, fmt.Errorf("%w: %s (declare it for an instance in the config to let lifeboat change it)", ErrNotOwned, out[0].Name)
	}
	return out, nil
}

// Owned is the set of names lifeboat may change: the names declared for
// instances in the config. A provider refuses to change any other name, so
// a record someone else manages is never touched. The zero value owns
// nothing.
type Owned struct {
	names map[string]struct{}
}

// OwnedNames returns the set of the given names, canonicalised.
func OwnedNames(names ...string) Owned {
	o := Owned{names: make(map[string]struct{}, len(names))}
	for _, n := range names {
		if n = CanonicalName(n); n != "" {
			o.names[n] = struct{}{}
		}
	}
	return o
}

// Owns reports whether name is in the set.
func (o Owned) Owns(name string) bool {
	_, ok := o.names[CanonicalName(name)]
	return ok
}

// Names returns the owned names, sorted.
func (o Owned) Names() []string {
	out := make([]string, 0, len(o.names))
	for n := range o.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Values returns the values of rs, in order: what history and events show.
func Values(rs []Record) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Value
	}
	return out
}
