package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// VerifyOptions bound Verify.
type VerifyOptions struct {
	// Timeout bounds the whole verification.
	Timeout time.Duration
	// FirstBackoff is the wait after the first round that did not verify;
	// it doubles each round up to MaxBackoff.
	FirstBackoff time.Duration
	MaxBackoff   time.Duration
	// QueryTimeout bounds one question to one server.
	QueryTimeout time.Duration
	// Net is "udp" (the default; truncated answers are asked again over
	// TCP) or "tcp".
	Net string
}

// NewVerifyOptions returns the defaults: 30s in all, backoff from 50ms to
// 2s, 2s per query, over UDP.
func NewVerifyOptions() VerifyOptions {
	return VerifyOptions{Timeout: 30 * time.Second, FirstBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second, QueryTimeout: 2 * time.Second, Net: "udp"}
}

// Verify asks every server in servers directly (recursion off, so no cache
// answers) for name and rtype until each gives an authoritative answer
// whose record set holds want, and returns how long that took. A server
// that answers NXDOMAIN, no data, the old value or nothing at all is asked
// again after a backoff until opts.Timeout; a server that refuses the
// question (REFUSED, NOTAUTH, NOTIMP) fails at once, since asking again
// will not change its mind. The error after the timeout wraps
// ErrNotVerified, is Temporary, and says what each server last answered.
func Verify(ctx context.Context, servers []string, name, rtype, want string, opts VerifyOptions) (took time.Duration, err error) {
	start := time.Now()
	d := NewVerifyOptions()
	if opts.Timeout <= 0 {
		opts.Timeout = d.Timeout
	}
	if opts.FirstBackoff <= 0 {
		opts.FirstBackoff = d.FirstBackoff
	}
	if opts.MaxBackoff < opts.FirstBackoff {
		opts.MaxBackoff = max(d.MaxBackoff, opts.FirstBackoff)
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = d.QueryTimeout
	}
	if opts.Net == "" {
		opts.Net = d.Net
	}
	if len(servers) == 0 {
		return 0, fmt.Errorf("verify %s %s: %w: no authoritative server to ask (configure the zone's servers)", name, rtype, ErrInvalidValue)
	}
	// Validate canonicalises want the way answers are canonicalised, so
	// "2001:DB8::1" matches "2001:db8::1".
	wantRec, err := Validate(name, Record{Name: name, Type: rtype, Value: want})
	if err != nil {
		return 0, fmt.Errorf("verify: %w", err)
	}
	qtype := dns.StringToType[wantRec.Type]

	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	pending := slices.Clone(servers)
	last := map[string]string{}
	backoff := opts.FirstBackoff
	for {
		var still []string
		for _, server := range pending {
			ok, seen, err := ask(ctx, server, wantRec, qtype, opts)
			if err != nil {
				return time.Since(start), err
			}
			if !ok {
				if seen != "" {
					last[server] = seen
				}
				still = append(still, server)
			}
		}
		pending = still
		if len(pending) == 0 {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			var b strings.Builder
			for _, s := range pending {
				seen := last[s]
				if seen == "" {
					seen = "nothing"
				}
				fmt.Fprintf(&b, "; %s answered %s", s, seen)
			}
			return time.Since(start), &Error{Op: "verify", Server: strings.Join(pending, ","), Rcode: -1, Code: "NOT_VERIFIED", Retry: true,
				Err: fmt.Errorf("%w: %s %s %q within %s%s", ErrNotVerified, wantRec.Name, wantRec.Type, wantRec.Value, time.Since(start).Round(time.Millisecond), b.String())}
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, opts.MaxBackoff)
	}
}

// ask puts one question to one server. ok says whether the answer holds
// want; seen describes the answer for the error message; err is set only
// when the server refuses and asking again is pointless.
func ask(ctx context.Context, server string, want Record, qtype uint16, opts VerifyOptions) (ok bool, seen string, err error) {
	m := new(dns.Msg)
	m.SetQuestion(want.Name, qtype)
	m.RecursionDesired = false
	m.SetEdns0(1232, false)
	c := &dns.Client{Net: opts.Net, Timeout: opts.QueryTimeout}
	r, _, xerr := c.ExchangeContext(ctx, m, server)
	if xerr == nil && r.Truncated && opts.Net == "udp" {
		c.Net = "tcp"
		r, _, xerr = c.ExchangeContext(ctx, m, server)
	}
	if xerr != nil {
		if dl, ok := ctx.Deadline(); ctx.Err() != nil || ok && !time.Now().Before(dl) {
			return false, "", nil // cut short by the deadline: keep what the server said before
		}
		return false, "nothing (" + xerr.Error() + ")", nil
	}
	switch r.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeRefused, dns.RcodeNotAuth, dns.RcodeNotImplemented, dns.RcodeFormatError:
		e := RcodeError("verify", server, r.Rcode, 0)
		return false, "", fmt.Errorf("verify %s %s: %w", want.Name, want.Type, e)
	default:
		return false, RcodeName(r.Rcode), nil
	}
	var values []string
	for _, rr := range r.Answer {
		got, isRec := RecordOf(rr)
		if !isRec || got.Name != want.Name || got.Type != want.Type {
			continue
		}
		values = append(values, got.Value)
	}
	if len(values) == 0 {
		return false, "no data", nil
	}
	seen = "[" + strings.Join(values, " ") + "]"
	if !r.Authoritative {
		// A non-authoritative answer comes from a cache or a forwarder,
		// and says nothing about what the zone holds now.
		return false, seen + " without the AA bit (not authoritative for the zone?)", nil
	}
	return slices.Contains(values, want.Value), seen, nil
}

// AsError returns the *Error err wraps, if any.
func AsError(err error) (*Error, bool) {
	var pe *Error
	ok := errors.As(err, &pe)
	return pe, ok
}
