// Package rfc2136 changes records with DNS dynamic updates (RFC 2136)
// signed with TSIG (RFC 8945), as BIND, Knot and PowerDNS accept them. A
// Set is one update message that deletes the RRset and adds the new
// records, with no prerequisites, so the server applies all of it or none.
// Get asks the server directly.
package rfc2136

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"lifeboat.dev/services/dns-updater/provider"
)

// Options configure a Provider.
type Options struct {
	// Server is the primary server's address, host:port (port 53 when
	// omitted), where updates go.
	Server string
	// Zone is the zone updated, e.g. "example.com.".
	Zone string
	// Key signs every update. With an empty Key.Name updates go unsigned,
	// for servers that allow updates by address.
	Key Key
	// Owned are the names Set may change.
	Owned provider.Owned
	// Authoritative are the servers changes are verified against; Server
	// alone when empty. List the secondaries too, to verify they have the
	// change.
	Authoritative []string
	// Net is "tcp" (the default: an update's answer is never lost to a
	// dropped datagram) or "udp".
	Net string
	// Timeout bounds one exchange with the server.
	Timeout time.Duration
}

// NewOptions returns the defaults for zone at server, signed with key.
func NewOptions(server, zone string, key Key) Options {
	return Options{Server: server, Zone: zone, Key: key, Net: "tcp", Timeout: 5 * time.Second}
}

// Provider updates one zone at one server.
type Provider struct {
	opts Options
	zone string
}

var _ provider.Provider = (*Provider)(nil)

// New checks opts and returns the provider. Nothing is sent until Get or
// Set.
func New(opts Options) (*Provider, error) {
	zone, err := provider.CheckZone(opts.Zone)
	if err != nil {
		return nil, fmt.Errorf("rfc2136: %w", err)
	}
	if opts.Server == "" {
		return nil, fmt.Errorf("rfc2136: no server to send updates to (set the primary's host:port)")
	}
	if _, _, err := net.SplitHostPort(opts.Server); err != nil {
		opts.Server = net.JoinHostPort(opts.Server, "53")
	}
	if opts.Key.Name != "" {
		opts.Key.Name = dns.CanonicalName(opts.Key.Name)
		if opts.Key.Algorithm == "" {
			opts.Key.Algorithm = dns.HmacSHA256
		}
	}
	if opts.Net == "" {
		opts.Net = "tcp"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if len(opts.Authoritative) == 0 {
		opts.Authoritative = []string{opts.Server}
	}
	return &Provider{opts: opts, zone: zone}, nil
}

// Name returns "rfc2136".
func (p *Provider) Name() string { return "rfc2136" }

// Authoritative returns the servers to verify against.
func (p *Provider) Authoritative() []string { return slices.Clone(p.opts.Authoritative) }

// Get asks the server for the record set of name and type, without
// recursion; an answer without authority is an error (the server does not
// serve the zone).
func (p *Provider) Get(ctx context.Context, name, rtype string) ([]provider.Record, error) {
	name, rtype = provider.CanonicalName(name), strings.ToUpper(rtype)
	if !provider.InZone(name, p.zone) {
		return nil, fmt.Errorf("rfc2136: get: %w: %q is not in zone %q", provider.ErrOutsideZone, name, p.zone)
	}
	qtype, ok := dns.StringToType[rtype]
	if !ok {
		return nil, fmt.Errorf("rfc2136: get: %w: %q", provider.ErrUnsupportedType, rtype)
	}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	r, err := p.exchange(ctx, "query", m, false)
	if err != nil {
		if pe, ok := provider.AsError(err); ok && pe.Rcode == dns.RcodeNameError {
			return nil, fmt.Errorf("rfc2136: get %s %s: %w", name, rtype, provider.ErrNotFound)
		}
		return nil, fmt.Errorf("rfc2136: get %s %s: %w", name, rtype, err)
	}
	if !r.Authoritative {
		e := &provider.Error{Op: "query", Server: p.opts.Server, Rcode: r.Rcode, Code: "NOTAUTH",
			Err: fmt.Errorf("the answer for %s lacks the AA bit: the server is not authoritative for %s", name, p.zone)}
		return nil, fmt.Errorf("rfc2136: get %s %s: %w", name, rtype, e)
	}
	var out []provider.Record
	for _, rr := range r.Answer {
		if rec, ok := provider.RecordOf(rr); ok && rec.Name == name && rec.Type == rtype {
			out = append(out, rec)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("rfc2136: get %s %s: %w", name, rtype, provider.ErrNotFound)
	}
	slices.SortFunc(out, func(a, b provider.Record) int { return strings.Compare(a.Value, b.Value) })
	return out, nil
}

// Set sends one signed update that deletes the RRset of rs's name and type
// and adds rs. The error carries the server's response code or TSIG error
// (NOTAUTH with BADSIG for a wrong secret, REFUSED for a key the zone does
// not allow) and is Temporary only when the server could not be reached or
// failed (SERVFAIL).
func (p *Provider) Set(ctx context.Context, rs []provider.Record) error {
	rs, err := provider.ValidateSet(p.zone, p.opts.Owned, rs)
	if err != nil {
		return fmt.Errorf("rfc2136: set: %w", err)
	}
	name, rtype := rs[0].Name, rs[0].Type
	m := new(dns.Msg)
	m.SetUpdate(p.zone)
	m.RemoveRRset([]dns.RR{&dns.ANY{Hdr: dns.RR_Header{Name: name, Rrtype: dns.StringToType[rtype], Class: dns.ClassINET}}})
	rrs := make([]dns.RR, 0, len(rs))
	for _, r := range rs {
		rr, err := provider.NewRR(r)
		if err != nil {
			return fmt.Errorf("rfc2136: set: %w", err)
		}
		rrs = append(rrs, rr)
	}
	m.Insert(rrs)
	if _, err := p.exchange(ctx, "update", m, true); err != nil {
		return fmt.Errorf("rfc2136: set %s %s: %w", name, rtype, err)
	}
	return nil
}

// exchange sends m (signed when sign and a key is set) and returns the
// answer, or a *provider.Error for a failed exchange or an answer whose
// response code is not NOERROR.
func (p *Provider) exchange(ctx context.Context, op string, m *dns.Msg, sign bool) (*dns.Msg, error) {
	c := &dns.Client{Net: p.opts.Net, Timeout: p.opts.Timeout}
	if sign && p.opts.Key.Name != "" {
		m.SetTsig(p.opts.Key.Name, p.opts.Key.Algorithm, 300, time.Now().Unix())
		c.TsigSecret = map[string]string{p.opts.Key.Name: p.opts.Key.Secret}
	}
	r, _, err := c.ExchangeContext(ctx, m, p.opts.Server)
	if r == nil || r.Id != m.Id {
		if err == nil {
			err = fmt.Errorf("no answer")
		}
		return nil, provider.TransportError(ctx, op, p.opts.Server, err)
	}
	var tsigErr uint16
	if t := r.IsTsig(); t != nil {
		tsigErr = t.Error
	}
	if r.Rcode != dns.RcodeSuccess || tsigErr != 0 {
		return nil, provider.RcodeError(op, p.opts.Server, r.Rcode, tsigErr)
	}
	if err != nil {
		// NOERROR, but the answer's signature does not verify with our
		// key: something between us and the server altered it, or it is
		// not the server we think.
		return nil, &provider.Error{Op: op, Server: p.opts.Server, Rcode: r.Rcode, Code: "BADSIG",
			Err: fmt.Errorf("the answer's TSIG signature does not verify: %w", err)}
	}
	return r, nil
}
