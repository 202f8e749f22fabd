package bindtest

import (
	"testing"

	"github.com/miekg/dns"
)

// TestStart runs the real named (skipped, or failed in CI, when it is
// missing) and checks what Start promises: an authoritative SOA on
// Addr, and a key file that is BIND's format.
func TestStart(t *testing.T) {
	s := Start(t)
	r, err := s.Query(t.Context(), s.Zone, dns.TypeSOA)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Authoritative || len(r.Answer) != 1 {
		t.Fatalf("named's SOA answer: %v", r)
	}
	if s.KeyName != KeyName || s.Secret == "" || s.KeyFile == "" {
		t.Fatalf("key %q %q in %q", s.KeyName, s.Secret, s.KeyFile)
	}
}
