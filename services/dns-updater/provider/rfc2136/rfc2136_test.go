package rfc2136_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"lifeboat.dev/services/dns-updater/provider"
	"lifeboat.dev/services/dns-updater/provider/providertest"
	"lifeboat.dev/services/dns-updater/provider/rfc2136"
	"lifeboat.dev/services/dns-updater/provider/rfc2136/bindtest"
)

// startBIND runs named with the zone providertest expects.
func startBIND(t testing.TB) *bindtest.Server {
	kept := providertest.Kept(bindtest.Zone)
	return bindtest.StartZone(t, bindtest.Zone, bindtest.DefaultZoneFile(bindtest.Zone)+kept.String()+"\n")
}

func newProvider(t testing.TB, b *bindtest.Server, edit func(*rfc2136.Options)) *rfc2136.Provider {
	t.Helper()
	key, err := rfc2136.ReadKeyFile(b.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	opts := rfc2136.NewOptions(b.Addr, b.Zone, key)
	opts.Owned = provider.OwnedNames(providertest.Owned(b.Zone)...)
	if edit != nil {
		edit(&opts)
	}
	p, err := rfc2136.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var www = provider.Record{Name: "www." + bindtest.Zone, Type: "A", Value: "192.0.2.1", TTL: 60}

func TestConformanceAgainstBIND(t *testing.T) {
	providertest.Run(t, func(t *testing.T) provider.Provider {
		b := startBIND(t)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("named's log:\n%s", b.Log())
			}
		})
		return newProvider(t, b, nil)
	}, bindtest.Zone)
}

// expectDNSError wants err to carry a *provider.Error with the given code
// and temporariness.
func expectDNSError(t *testing.T, err error, code string, temporary bool) *provider.Error {
	t.Helper()
	t.Logf("error: %v", err)
	pe, ok := provider.AsError(err)
	if !ok {
		t.Fatalf("error %v (%T) carries no provider.Error", err, err)
	}
	if pe.Code != code {
		t.Fatalf("code %q, want %q (error: %v)", pe.Code, code, err)
	}
	if provider.IsTemporary(err) != temporary {
		t.Fatalf("Temporary() = %v, want %v (error: %v)", provider.IsTemporary(err), temporary, err)
	}
	if provider.Reason(err) != code {
		t.Fatalf("Reason = %q, want %q", provider.Reason(err), code)
	}
	return pe
}

// expectUnchanged wants www absent at the server: a refused update
// applied nothing.
func expectUnchanged(t *testing.T, b *bindtest.Server) {
	t.Helper()
	r, err := b.Query(t.Context(), www.Name, dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Answer) != 0 {
		t.Fatalf("a refused update changed the zone: %v", r.Answer)
	}
}

func TestWrongSecretIsBADSIG(t *testing.T) {
	b := startBIND(t)
	p := newProvider(t, b, func(o *rfc2136.Options) {
		o.Key.Secret = base64.StdEncoding.EncodeToString([]byte("not the secret named knows, 32 b"))
	})
	err := p.Set(t.Context(), []provider.Record{www})
	pe := expectDNSError(t, err, "BADSIG", false)
	if pe.Rcode != dns.RcodeNotAuth {
		t.Fatalf("rcode %s, want NOTAUTH", provider.RcodeName(pe.Rcode))
	}
	if !strings.Contains(err.Error(), "secret") {
		t.Fatalf("error %q does not point at the secret", err)
	}
	expectUnchanged(t, b)
}

func TestUnknownKeyIsBADKEY(t *testing.T) {
	b := startBIND(t)
	p := newProvider(t, b, func(o *rfc2136.Options) { o.Key.Name = "stranger." })
	expectDNSError(t, p.Set(t.Context(), []provider.Record{www}), "BADKEY", false)
	expectUnchanged(t, b)
}

func TestUnsignedUpdateIsREFUSED(t *testing.T) {
	b := startBIND(t)
	p := newProvider(t, b, func(o *rfc2136.Options) { o.Key = rfc2136.Key{} })
	expectDNSError(t, p.Set(t.Context(), []provider.Record{www}), "REFUSED", false)
	expectUnchanged(t, b)
}

func TestZoneTheServerDoesNotServeIsNOTAUTH(t *testing.T) {
	b := startBIND(t)
	p := newProvider(t, b, func(o *rfc2136.Options) {
		o.Zone = "other.test."
		o.Owned = provider.OwnedNames("www.other.test.")
	})
	err := p.Set(t.Context(), []provider.Record{{Name: "www.other.test.", Type: "A", Value: "192.0.2.1", TTL: 60}})
	expectDNSError(t, err, "NOTAUTH", false)
	_, err = p.Get(t.Context(), "www.other.test.", "A")
	if errors.Is(err, provider.ErrNotFound) || err == nil {
		t.Fatalf("Get in a zone the server does not serve = %v, want an error", err)
	}
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestUnreachableServerIsTemporary(t *testing.T) {
	key := rfc2136.Key{Name: "k.", Algorithm: dns.HmacSHA256, Secret: base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))}
	for _, network := range []string{"tcp", "udp"} {
		t.Run(network, func(t *testing.T) {
			opts := rfc2136.NewOptions(closedAddr(t), bindtest.Zone, key)
			opts.Owned = provider.OwnedNames(www.Name)
			opts.Net = network
			opts.Timeout = time.Second
			p, err := rfc2136.New(opts)
			if err != nil {
				t.Fatal(err)
			}
			err = p.Set(t.Context(), []provider.Record{www})
			pe, ok := provider.AsError(err)
			if !ok || !pe.Temporary() || pe.Rcode != -1 {
				t.Fatalf("error %v: want a temporary error without a response code", err)
			}
		})
	}
}

func TestCancelledIsNotTemporary(t *testing.T) {
	b := startBIND(t)
	p := newProvider(t, b, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := p.Set(ctx, []provider.Record{www})
	if err == nil || provider.IsTemporary(err) {
		t.Fatalf("Set with a cancelled context = %v, want a non-temporary error", err)
	}
}

// TestRefusedBeforeSending points the provider at a closed port: refused
// input must fail validation, not with "unreachable", which shows nothing
// was sent.
func TestRefusedBeforeSending(t *testing.T) {
	opts := rfc2136.NewOptions(closedAddr(t), bindtest.Zone, rfc2136.Key{})
	opts.Owned = provider.OwnedNames(www.Name, "www.elsewhere.invalid.")
	p, err := rfc2136.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		r    provider.Record
		want error
	}{
		{provider.Record{Name: "www.elsewhere.invalid.", Type: "A", Value: "192.0.2.1"}, provider.ErrOutsideZone},
		{provider.Record{Name: www.Name, Type: "A", Value: "10.0.0.256"}, provider.ErrInvalidValue},
		{provider.Record{Name: www.Name, Type: "MX", Value: "10 mail"}, provider.ErrUnsupportedType},
		{provider.Record{Name: "keep." + bindtest.Zone, Type: "A", Value: "192.0.2.1"}, provider.ErrNotOwned},
	} {
		if err := p.Set(t.Context(), []provider.Record{tc.r}); !errors.Is(err, tc.want) {
			t.Errorf("Set(%v) = %v, want %v", tc.r, err, tc.want)
		}
	}
}

func TestNew(t *testing.T) {
	if _, err := rfc2136.New(rfc2136.Options{Zone: "example.test"}); err == nil {
		t.Fatal("New without a server succeeded")
	}
	if _, err := rfc2136.New(rfc2136.Options{Server: "127.0.0.1", Zone: "bad..zone"}); err == nil {
		t.Fatal("New with a bad zone succeeded")
	}
	p, err := rfc2136.New(rfc2136.Options{Server: "ns1.example.test", Zone: "example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Authoritative(); len(got) != 1 || got[0] != "ns1.example.test:53" {
		t.Fatalf("Authoritative() = %v, want the server on port 53", got)
	}
}

// BenchmarkSetVerify measures a change as the service makes it against a
// real BIND: a signed update, then Verify until named answers it.
func BenchmarkSetVerify(b *testing.B) {
	named := startBIND(b)
	key, err := rfc2136.ReadKeyFile(named.KeyFile)
	if err != nil {
		b.Fatal(err)
	}
	opts := rfc2136.NewOptions(named.Addr, named.Zone, key)
	opts.Owned = provider.OwnedNames(www.Name)
	p, err := rfc2136.New(opts)
	if err != nil {
		b.Fatal(err)
	}
	vopts := provider.NewVerifyOptions()
	i := 0
	for b.Loop() {
		i++
		v := net.IPv4(10, byte(i>>16), byte(i>>8), byte(i)).String()
		if err := p.Set(b.Context(), []provider.Record{{Name: www.Name, Type: "A", Value: v, TTL: 30}}); err != nil {
			b.Fatal(err)
		}
		if _, err := provider.Verify(b.Context(), p.Authoritative(), www.Name, "A", v, vopts); err != nil {
			b.Fatal(err)
		}
	}
}
