package config

import "testing"

func TestParseBytesAndRate(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"4096", 4096, true}, {"512KiB", 512 << 10, true}, {"20MiB", 20 << 20, true}, {"1.5GiB", 3 << 29, true},
		{"10MB", 10e6, true}, {"1 GiB", 1 << 30, true}, {"7B", 7, true},
		{"", 0, false}, {"0", 0, false}, {"-1MiB", 0, false}, {"ten MiB", 0, false}, {"1PiB", 0, false}, {"1e30", 0, false},
	} {
		got, err := ParseBytes(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
	if n, err := ParseRate("20MiB/s"); err != nil || n != 20<<20 {
		t.Errorf("ParseRate(20MiB/s) = %d, %v", n, err)
	}
	if _, err := ParseRate("fast"); err == nil {
		t.Error("ParseRate(fast) accepted")
	}
}
