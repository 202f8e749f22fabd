// Package providertest is the conformance test every DNS provider passes:
// set, get, replace and verify records, and refuse what must be refused
// (a name outside the zone, a value that is not an address, a name lifeboat
// does not own) without changing anything.
package providertest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"lifeboat.dev/services/dns-updater/provider"
)

// Owned returns the names the provider under test must be told it owns.
func Owned(zone string) []string {
	zone = provider.CanonicalName(zone)
	return []string{"www." + zone, "multi." + zone, "v6." + zone, "alias." + zone, "txt." + zone}
}

// Kept is a record the zone must already hold when Run starts, at a name
// the provider must not own: Run checks that it survives.
func Kept(zone string) provider.Record {
	return provider.Record{Name: "keep." + provider.CanonicalName(zone), Type: "A", Value: "192.0.2.99", TTL: 300}
}

// Run runs the conformance test against the provider newProvider returns
// for zone, which must own exactly Owned(zone) and already hold Kept(zone).
// The provider's Authoritative servers must answer DNS for the zone.
func Run(t *testing.T, newProvider func(t *testing.T) provider.Provider, zone string) {
	zone = provider.CanonicalName(zone)
	p := newProvider(t)
	ctx := t.Context()
	www, multi, v6, alias, txt := "www."+zone, "multi."+zone, "v6."+zone, "alias."+zone, "txt."+zone
	kept := Kept(zone)

	t.Run("name", func(t *testing.T) {
		if p.Name() == "" {
			t.Fatal("Name() is empty; events report it")
		}
		if len(p.Authoritative()) == 0 {
			t.Fatal("Authoritative() is empty: nothing to verify against")
		}
	})
	t.Run("get absent", func(t *testing.T) {
		_, err := p.Get(ctx, "absent."+zone, "A")
		if !errors.Is(err, provider.ErrNotFound) {
			t.Fatalf("Get(absent) = %v, want ErrNotFound", err)
		}
	})
	t.Run("set and get A", func(t *testing.T) {
		want := []provider.Record{{Name: www, Type: "A", Value: "192.0.2.1", TTL: 300}}
		mustSet(t, p, want)
		expectGet(t, p, www, "A", want)
		expectServed(t, p, www, "A", "192.0.2.1")
	})
	t.Run("replace A", func(t *testing.T) {
		// Given without the trailing dot and in upper case: providers
		// canonicalise.
		mustSet(t, p, []provider.Record{{Name: strings.ToUpper(strings.TrimSuffix(www, ".")), Type: "a", Value: "192.0.2.2", TTL: 60}})
		expectGet(t, p, www, "A", []provider.Record{{Name: www, Type: "A", Value: "192.0.2.2", TTL: 60}})
		verify(t, p, www, "A", "192.0.2.2")
		expectServed(t, p, www, "A", "192.0.2.2")
	})
	t.Run("replace a set of several", func(t *testing.T) {
		two := []provider.Record{{Name: multi, Type: "A", Value: "192.0.2.4", TTL: 120}, {Name: multi, Type: "A", Value: "192.0.2.3", TTL: 120}}
		mustSet(t, p, two)
		expectGet(t, p, multi, "A", []provider.Record{two[1], two[0]})
		one := []provider.Record{{Name: multi, Type: "A", Value: "192.0.2.5", TTL: 120}}
		mustSet(t, p, one)
		expectGet(t, p, multi, "A", one)
		verify(t, p, multi, "A", "192.0.2.5")
		expectServed(t, p, multi, "A", "192.0.2.5")
	})
	for _, tc := range []struct{ kind, name, value string }{
		{"AAAA", v6, "2001:db8::1"},
		{"CNAME", alias, www},
		{"TXT", txt, "lifeboat conformance"},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			rs := []provider.Record{{Name: tc.name, Type: tc.kind, Value: tc.value, TTL: 300}}
			// Every provider must handle every type in provider.Types:
			// a provider that cannot is not conformant, so this fails
			// rather than skips.
			if err := p.Set(ctx, rs); err != nil {
				t.Fatalf("Set(%v): %v", rs, err)
			}
			expectGet(t, p, tc.name, tc.kind, rs)
			verify(t, p, tc.name, tc.kind, tc.value)
			expectServed(t, p, tc.name, tc.kind, tc.value)
		})
	}
	t.Run("refuse a name outside the zone", func(t *testing.T) {
		name := "www.elsewhere.invalid."
		err := p.Set(ctx, []provider.Record{{Name: name, Type: "A", Value: "192.0.2.7", TTL: 60}})
		expectRefused(t, err, provider.ErrOutsideZone, name)
	})
	for _, tc := range []struct{ rtype, value string }{
		{"A", "not-an-ip"},
		{"A", "2001:db8::7"},
		{"AAAA", "192.0.2.7"},
		{"A", "192.0.2.300"},
	} {
		t.Run("refuse "+tc.rtype+" "+tc.value, func(t *testing.T) {
			name := www
			if tc.rtype == "AAAA" {
				name = v6
			}
			err := p.Set(ctx, []provider.Record{{Name: name, Type: tc.rtype, Value: tc.value, TTL: 60}})
			expectRefused(t, err, provider.ErrInvalidValue, tc.value)
			expectGet(t, p, www, "A", []provider.Record{{Name: www, Type: "A", Value: "192.0.2.2", TTL: 60}})
		})
	}
	t.Run("refuse a name it does not own", func(t *testing.T) {
		err := p.Set(ctx, []provider.Record{{Name: kept.Name, Type: "A", Value: "192.0.2.100", TTL: 60}})
		expectRefused(t, err, provider.ErrNotOwned, kept.Name)
		expectGet(t, p, kept.Name, "A", []provider.Record{kept})
		expectServed(t, p, kept.Name, "A", kept.Value)
		err = p.Set(ctx, []provider.Record{{Name: "nobody." + zone, Type: "A", Value: "192.0.2.100", TTL: 60}})
		expectRefused(t, err, provider.ErrNotOwned, "nobody."+zone)
		if _, err := p.Get(ctx, "nobody."+zone, "A"); !errors.Is(err, provider.ErrNotFound) {
			t.Fatalf("Get(nobody) after a refused Set = %v, want ErrNotFound", err)
		}
	})
}

func mustSet(t *testing.T, p provider.Provider, rs []provider.Record) {
	t.Helper()
	if err := p.Set(t.Context(), rs); err != nil {
		t.Fatalf("Set(%v): %v", rs, err)
	}
}

func expectGet(t *testing.T, p provider.Provider, name, rtype string, want []provider.Record) {
	t.Helper()
	got, err := p.Get(t.Context(), name, rtype)
	if err != nil {
		t.Fatalf("Get(%s, %s): %v", name, rtype, err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Get(%s, %s) = %v, want %v", name, rtype, got, want)
	}
}

func verify(t *testing.T, p provider.Provider, name, rtype, want string) {
	t.Helper()
	opts := provider.NewVerifyOptions()
	opts.Timeout = 20 * time.Second
	if _, err := provider.Verify(t.Context(), p.Authoritative(), name, rtype, want, opts); err != nil {
		t.Fatalf("Verify(%s %s %s): %v", name, rtype, want, err)
	}
}

// expectServed asks every authoritative server directly and wants exactly
// the one value: a replace leaves nothing of the old set behind.
func expectServed(t *testing.T, p provider.Provider, name, rtype, want string) {
	t.Helper()
	for _, server := range p.Authoritative() {
		m := new(dns.Msg)
		m.SetQuestion(provider.CanonicalName(name), dns.StringToType[rtype])
		m.RecursionDesired = false
		c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		r, _, err := c.ExchangeContext(ctx, m, server)
		cancel()
		if err != nil {
			t.Fatalf("ask %s for %s %s: %v", server, name, rtype, err)
		}
		var got []string
		for _, rr := range r.Answer {
			if rec, ok := provider.RecordOf(rr); ok && rec.Type == rtype && rec.Name == provider.CanonicalName(name) {
				got = append(got, rec.Value)
			}
		}
		if !r.Authoritative || len(got) != 1 || got[0] != want {
			t.Fatalf("%s answers %s %s with %v (aa=%v, rcode %s), want exactly [%s]", server, name, rtype, got, r.Authoritative, dns.RcodeToString[r.Rcode], want)
		}
	}
}

// expectRefused wants err to wrap sentinel, quote the offending value, and
// not be temporary: asking again would give the same answer.
func expectRefused(t *testing.T, err, sentinel error, offending string) {
	t.Helper()
	switch {
	case !errors.Is(err, sentinel):
		t.Fatalf("error = %v, want %v", err, sentinel)
	case !strings.Contains(err.Error(), offending):
		t.Fatalf("error %q does not name the offending value %q", err, offending)
	case provider.IsTemporary(err):
		t.Fatalf("error %q is temporary; retrying cannot help", err)
	}
}
