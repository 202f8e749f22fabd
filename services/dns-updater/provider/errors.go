package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/miekg/dns"
)

// Error is a failure reported by, or on the way to, a DNS service: a DNS
// response code (REFUSED, NOTAUTH, NXDOMAIN...), a TSIG error (BADSIG,
// BADKEY, BADTIME), an HTTP error of an API, or a server that could not be
// reached. Temporary tells whether trying again can help.
type Error struct {
	// Op is what was attempted: "update", "query", "search", "create"...
	Op string
	// Server is the address or URL that was asked.
	Server string
	// Rcode is the DNS response code of the answer, or -1 when there was
	// no DNS answer (unreachable server, HTTP API).
	Rcode int
	// Code is the short reason an operator acts on: "REFUSED", "BADSIG",
	// "HTTP 401 Client.Ibap.Auth", "unreachable".
	Code string
	// Retry is whether trying again can help (see Temporary).
	Retry bool
	// Err is the underlying cause, when there is one.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s at %s: %s", e.Op, e.Server, e.Code)
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether retrying can help: true for an unreachable or
// overloaded server (timeouts, SERVFAIL, HTTP 5xx), false for an answer
// that will not change by asking again (BADSIG, REFUSED, NOTAUTH, HTTP 4xx).
func (e *Error) Temporary() bool { return e.Retry }

// RcodeError returns the error for a DNS answer with response code rcode
// (and tsigErr, the TSIG error of the answer, when not zero).
func RcodeError(op, server string, rcode int, tsigErr uint16) *Error {
	code := RcodeName(rcode)
	if tsigErr != 0 {
		code = RcodeName(int(tsigErr))
	}
	e := &Error{Op: op, Server: server, Rcode: rcode, Code: code}
	// SERVFAIL means the server could not answer now (a zone still loading,
	// a journal it could not write); everything else is a verdict.
	e.Retry = rcode == dns.RcodeServerFailure && tsigErr == 0
	e.Err = errors.New(rcodeHint(rcode, tsigErr))
	return e
}

// TransportError returns the error for an exchange that got no answer: the
// server is unreachable, timed out, or the connection broke. It is
// temporary unless ctx was cancelled by the caller.
func TransportError(ctx context.Context, op, server string, err error) *Error {
	e := &Error{Op: op, Server: server, Rcode: -1, Code: "unreachable", Retry: true, Err: err}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		e.Code = "timeout"
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		e.Code, e.Retry = "cancelled", false
	}
	return e
}

// RcodeName returns the mnemonic of a DNS response code or TSIG error
// ("NOERROR", "REFUSED", "BADSIG"), or "RCODE n" for one without a name.
func RcodeName(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return fmt.Sprintf("RCODE %d", rcode)
}

// rcodeHint says, for the codes an operator meets, what they mean and what
// to do.
func rcodeHint(rcode int, tsigErr uint16) string {
	switch int(tsigErr) {
	case dns.RcodeBadSig:
		return "the server rejected the TSIG signature: the key's secret or algorithm differs from the server's"
	case dns.RcodeBadKey:
		return "the server does not know the TSIG key: check the key name and that the server's config declares it"
	case dns.RcodeBadTime:
		return "the server rejected the TSIG time: this machine's clock and the server's differ by more than the fudge (300s)"
	}
	switch rcode {
	case dns.RcodeRefused:
		return "the server refused: allow this key or address to update the zone (allow-update / update-policy)"
	case dns.RcodeNotAuth:
		return "the server is not authoritative for the zone, or the key is not allowed: check the zone name and the key"
	case dns.RcodeNotZone:
		return "the name is not in the zone the update was sent for"
	case dns.RcodeServerFailure:
		return "the server failed to process the request"
	case dns.RcodeFormatError:
		return "the server could not parse the request"
	case dns.RcodeNotImplemented:
		return "the server does not implement this operation (dynamic update not enabled?)"
	case dns.RcodeNameError:
		return "the name does not exist"
	}
	return "the server answered " + RcodeName(rcode)
}

// IsTemporary reports whether err, or an error it wraps, says that retrying
// can help. Validation and ownership errors are never temporary.
func IsTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Reason returns the short reason to report for err in DNSUpdateFailed:
// the DNS response code or TSIG error when there is one ("BADSIG",
// "REFUSED"), "NOT_OWNED", "OUTSIDE_ZONE", "INVALID" for refused input,
// and otherwise the error text.
func Reason(err error) string {
	var pe *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &pe):
		return pe.Code
	case errors.Is(err, ErrNotOwned):
		return "NOT_OWNED"
	case errors.Is(err, ErrOutsideZone):
		return "OUTSIDE_ZONE"
	case errors.Is(err, ErrInvalidValue), errors.Is(err, ErrUnsupportedType):
		return "INVALID"
	case errors.Is(err, ErrNotVerified):
		return "NOT_VERIFIED"
	}
	return err.Error()
}
