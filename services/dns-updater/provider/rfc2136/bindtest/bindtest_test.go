package bindtest

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// recorder stands in for the testing.TB a test passes to Start, to see
// whether lookNamed fails or skips it.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Fatal(args ...any)         { r.fatal = fmt.Sprint(args...) }
func (r *recorder) Fatalf(f string, a ...any) { r.fatal = fmt.Sprintf(f, a...) }
func (r *recorder) Skip(args ...any)          { r.skip = fmt.Sprint(args...) }
func (r *recorder) Skipf(f string, a ...any)  { r.skip = fmt.Sprintf(f, a...) }

// hideNamed makes named impossible to find for the rest of the test.
func hideNamed(t *testing.T) {
	oldLook, oldPaths := lookPath, namedPaths
	lookPath = func(string) (string, error) { return "", errors.New("not found") }
	namedPaths = []string{t.TempDir() + "/no-named-here"}
	t.Cleanup(func() { lookPath, namedPaths = oldLook, oldPaths })
}

func TestMissingNamedFailsInCI(t *testing.T) {
	hideNamed(t)
	t.Setenv("CI", "true")
	r := &recorder{TB: t}
	if p := lookNamed(r); p != "" || r.skip != "" || !strings.Contains(r.fatal, "apt-get install bind9") || !strings.Contains(r.fatal, "CI=true") {
		t.Fatalf("with CI=true and no named: path %q, fatal %q, skip %q; want the test failed, saying how to install it", p, r.fatal, r.skip)
	}
}

func TestMissingNamedSkipsElsewhere(t *testing.T) {
	hideNamed(t)
	t.Setenv("CI", "")
	r := &recorder{TB: t}
	if p := lookNamed(r); p != "" || r.fatal != "" || !strings.Contains(r.skip, "apt-get install bind9") {
		t.Fatalf("without CI and no named: path %q, fatal %q, skip %q; want the test skipped, saying how to install it", p, r.fatal, r.skip)
	}
}

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
