package embedded

import (
	"strings"
	"testing"

	"lifeboat.dev/pkg/testtool"
	"lifeboat.dev/services/dns-updater/provider"
)

// TestDig asks the server with a real resolver tool, over UDP and TCP, as
// an operator would after a failover.
func TestDig(t *testing.T) {
	s := start(t, openDB(t), zoneFile)
	for _, transport := range []string{"+notcp", "+tcp"} {
		t.Run(transport, func(t *testing.T) {
			if got := testtool.Dig(t, s.Addr(), transport, "www.example.test", "A", "+short"); got != "192.0.2.10" {
				t.Fatalf("dig www A +short = %q, want 192.0.2.10", got)
			}
			out := testtool.Dig(t, s.Addr(), transport, "nope.example.test", "A")
			for _, want := range []string{"status: NXDOMAIN", "flags: qr aa", "AUTHORITY: 1", "SOA\tns.example.test. hostmaster.example.test. 2024010101"} {
				if !strings.Contains(out, want) {
					t.Fatalf("dig nope A: no %q in\n%s", want, out)
				}
			}
			out = testtool.Dig(t, s.Addr(), transport, "sub.example.test", "A")
			if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "ANSWER: 0, AUTHORITY: 1") {
				t.Fatalf("dig sub A (an empty non-terminal) is not NODATA:\n%s", out)
			}
			out = testtool.Dig(t, s.Addr(), transport, "www.example.org", "A")
			if !strings.Contains(out, "status: REFUSED") {
				t.Fatalf("dig for a name outside the zone is not REFUSED:\n%s", out)
			}
		})
	}
	t.Run("after a change", func(t *testing.T) {
		if err := s.Set(t.Context(), []provider.Record{{Name: "www.example.test", Type: "A", Value: "198.51.100.20", TTL: 30}}); err != nil {
			t.Fatal(err)
		}
		if got := testtool.Dig(t, s.Addr(), "www.example.test", "A", "+short"); got != "198.51.100.20" {
			t.Fatalf("dig www A +short after Set = %q, want 198.51.100.20", got)
		}
		out := testtool.Dig(t, s.Addr(), "example.test", "SOA", "+short")
		if !strings.Contains(out, " 2024010102 ") {
			t.Fatalf("serial not bumped: %s", out)
		}
	})
}
