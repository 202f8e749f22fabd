package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/miekg/dns"
)

const zone = "example.test."

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   Record
		want Record
		err  error
	}{
		{"A", Record{"www.example.test", "a", " 192.0.2.1 ", 60}, Record{"www.example.test.", "A", "192.0.2.1", 60}, nil},
		{"apex", Record{"EXAMPLE.test.", "A", "192.0.2.1", 60}, Record{"example.test.", "A", "192.0.2.1", 60}, nil},
		{"AAAA canonical", Record{"v6.example.test", "AAAA", "2001:DB8:0::1", 60}, Record{"v6.example.test.", "AAAA", "2001:db8::1", 60}, nil},
		{"CNAME qualified", Record{"a.example.test", "CNAME", "WWW.example.test", 60}, Record{"a.example.test.", "CNAME", "www.example.test.", 60}, nil},
		{"TXT", Record{"t.example.test", "TXT", "v=spf1 -all", 60}, Record{"t.example.test.", "TXT", "v=spf1 -all", 60}, nil},
		{"outside", Record{"www.example.org", "A", "192.0.2.1", 60}, Record{}, ErrOutsideZone},
		{"suffix is not a parent", Record{"wwwexample.test", "A", "192.0.2.1", 60}, Record{}, ErrOutsideZone},
		{"not an IP", Record{"www.example.test", "A", "not-an-ip", 60}, Record{}, ErrInvalidValue},
		{"IPv6 in A", Record{"www.example.test", "A", "2001:db8::1", 60}, Record{}, ErrInvalidValue},
		{"IPv4 in AAAA", Record{"www.example.test", "AAAA", "192.0.2.1", 60}, Record{}, ErrInvalidValue},
		{"mapped IPv4 in AAAA", Record{"www.example.test", "AAAA", "::ffff:192.0.2.1", 60}, Record{}, ErrInvalidValue},
		{"zoned address", Record{"www.example.test", "AAAA", "fe80::1%eth0", 60}, Record{}, ErrInvalidValue},
		{"octet too large", Record{"www.example.test", "A", "192.0.2.256", 60}, Record{}, ErrInvalidValue},
		{"bad name", Record{"a..example.test", "A", "192.0.2.1", 60}, Record{}, ErrInvalidValue},
		{"empty name", Record{"", "A", "192.0.2.1", 60}, Record{}, ErrInvalidValue},
		{"CNAME to itself", Record{"a.example.test", "CNAME", "a.example.test.", 60}, Record{}, ErrInvalidValue},
		{"CNAME to nothing", Record{"a.example.test", "CNAME", "", 60}, Record{}, ErrInvalidValue},
		{"TXT with a quote", Record{"t.example.test", "TXT", `say "hi"`, 60}, Record{}, ErrInvalidValue},
		{"TXT with a newline", Record{"t.example.test", "TXT", "a\nb", 60}, Record{}, ErrInvalidValue},
		{"MX", Record{"www.example.test", "MX", "10 mail", 60}, Record{}, ErrUnsupportedType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Validate(zone, tc.in)
			if !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if err != nil {
				msg := err.Error()
				if !strings.Contains(msg, fmt.Sprintf("%q", tc.in.Value)) && !strings.Contains(msg, fmt.Sprintf("%q", tc.in.Name)) && !strings.Contains(msg, fmt.Sprintf("%q", tc.in.Type)) {
					t.Fatalf("error %q quotes none of the record's fields", err)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestValidateSet(t *testing.T) {
	owned := OwnedNames("www.example.test", "Alias.Example.Test.")
	a := func(v string, ttl uint32) Record { return Record{"www.example.test", "A", v, ttl} }
	for _, tc := range []struct {
		name string
		rs   []Record
		err  error
	}{
		{"one", []Record{a("192.0.2.1", 60)}, nil},
		{"two, sorted", []Record{a("192.0.2.2", 60), a("192.0.2.1", 60)}, nil},
		{"empty", nil, ErrInvalidValue},
		{"two names", []Record{a("192.0.2.1", 60), {"alias.example.test", "A", "192.0.2.1", 60}}, ErrInvalidValue},
		{"two types", []Record{a("192.0.2.1", 60), {"www.example.test", "AAAA", "2001:db8::1", 60}}, ErrInvalidValue},
		{"two TTLs", []Record{a("192.0.2.1", 60), a("192.0.2.2", 30)}, ErrInvalidValue},
		{"twice", []Record{a("192.0.2.1", 60), a("192.0.2.1", 60)}, ErrInvalidValue},
		{"two CNAMEs", []Record{{"alias.example.test", "CNAME", "x.example.test", 60}, {"alias.example.test", "CNAME", "y.example.test", 60}}, ErrInvalidValue},
		{"not owned", []Record{{"keep.example.test", "A", "192.0.2.1", 60}}, ErrNotOwned},
		{"invalid before ownership", []Record{{"keep.example.test", "A", "nope", 60}}, ErrInvalidValue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ValidateSet(zone, owned, tc.rs)
			if !errors.Is(err, tc.err) {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
			if err == nil && !slices.IsSortedFunc(got, func(a, b Record) int { return strings.Compare(a.Value, b.Value) }) {
				t.Fatalf("set %v not sorted", got)
			}
		})
	}
}

func TestOwned(t *testing.T) {
	o := OwnedNames("WWW.example.test", "api.example.test.", "")
	if !o.Owns("www.example.test.") || !o.Owns("API.example.test") || o.Owns("example.test") || o.Owns("x.www.example.test") {
		t.Fatalf("Owns is wrong for %v", o.Names())
	}
	if got := o.Names(); !slices.Equal(got, []string{"api.example.test.", "www.example.test."}) {
		t.Fatalf("Names() = %v", got)
	}
	if (Owned{}).Owns("www.example.test") {
		t.Fatal("the zero Owned owns a name")
	}
}

func TestCheckZone(t *testing.T) {
	for in, ok := range map[string]bool{"example.test": true, "Example.Test.": true, "": false, ".": false, "a..b": false} {
		if _, err := CheckZone(in); (err == nil) != ok {
			t.Errorf("CheckZone(%q) = %v", in, err)
		}
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		reason    string
		temporary bool
	}{
		{"BADSIG", RcodeError("update", "ns", dns.RcodeNotAuth, dns.RcodeBadSig), "BADSIG", false},
		{"BADKEY", RcodeError("update", "ns", dns.RcodeNotAuth, dns.RcodeBadKey), "BADKEY", false},
		{"REFUSED", RcodeError("update", "ns", dns.RcodeRefused, 0), "REFUSED", false},
		{"NOTAUTH", RcodeError("update", "ns", dns.RcodeNotAuth, 0), "NOTAUTH", false},
		{"NOTZONE", RcodeError("update", "ns", dns.RcodeNotZone, 0), "NOTZONE", false},
		{"NXDOMAIN", RcodeError("query", "ns", dns.RcodeNameError, 0), "NXDOMAIN", false},
		{"SERVFAIL", RcodeError("update", "ns", dns.RcodeServerFailure, 0), "SERVFAIL", true},
		{"unnamed", RcodeError("update", "ns", 4000, 0), "RCODE 4000", false},
		{"unreachable", TransportError(context.Background(), "update", "ns", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), "unreachable", true},
		{"wrapped", errors.Join(errors.New("x"), RcodeError("update", "ns", dns.RcodeRefused, 0)), "REFUSED", false},
		{"not owned", ErrNotOwned, "NOT_OWNED", false},
		{"outside", ErrOutsideZone, "OUTSIDE_ZONE", false},
		{"invalid", ErrInvalidValue, "INVALID", false},
		{"other", errors.New("disk full"), "disk full", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Reason(tc.err); got != tc.reason {
				t.Fatalf("Reason = %q, want %q", got, tc.reason)
			}
			if got := IsTemporary(tc.err); got != tc.temporary {
				t.Fatalf("IsTemporary = %v, want %v", got, tc.temporary)
			}
		})
	}
	e := RcodeError("update", "127.0.0.1:53", dns.RcodeNotAuth, dns.RcodeBadSig)
	for _, want := range []string{"update", "127.0.0.1:53", "BADSIG", "secret"} {
		if !strings.Contains(e.Error(), want) {
			t.Errorf("%q does not say %q", e, want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if c := TransportError(ctx, "update", "ns", ctx.Err()); c.Temporary() || c.Code != "cancelled" {
		t.Errorf("cancelled: %v temporary=%v", c, c.Temporary())
	}
}

// FuzzValidate: whatever Validate accepts converts to a DNS record and
// back to the same record.
func FuzzValidate(f *testing.F) {
	f.Add("www.example.test", "A", "192.0.2.1")
	f.Add("v6.example.test.", "AAAA", "2001:db8::1")
	f.Add("a.example.test", "CNAME", "www.example.test")
	f.Add("t.example.test", "TXT", "hello")
	f.Add("\\000.example.test", "TXT", "")
	f.Fuzz(func(t *testing.T, name, rtype, value string) {
		r, err := Validate(zone, Record{Name: name, Type: rtype, Value: value, TTL: 30})
		if err != nil {
			return
		}
		rr, err := NewRR(r)
		if err != nil {
			t.Fatalf("accepted %v but NewRR: %v", r, err)
		}
		buf := make([]byte, dns.MaxMsgSize)
		off, err := dns.PackRR(rr, buf, 0, nil, false)
		if err != nil {
			t.Fatalf("accepted %v but it does not pack: %v", r, err)
		}
		back, _, err := dns.UnpackRR(buf[:off], 0)
		if err != nil {
			t.Fatalf("%v does not unpack: %v", r, err)
		}
		got, ok := RecordOf(back)
		if !ok || got != r {
			t.Fatalf("round trip %v → %v", r, got)
		}
	})
}
