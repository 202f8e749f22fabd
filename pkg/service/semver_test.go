package service

import "testing"

func TestSemver(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", "0.0.0-dev"},
		{"dev", "0.0.0-dev"},
		{"v1.2.3", "1.2.3"},
		{"1.2.3-rc.1+build.5", "1.2.3-rc.1+build.5"},
		{"d8d6f31", "0.0.0+d8d6f31"},
		{"d8d6f31-dirty", "0.0.0+d8d6f31-dirty"},
		{"0123456", "0.0.0+0123456"},
		{"v1.2.3-4-gd8d6f31-dirty", "1.2.3-4-gd8d6f31-dirty"},
		{"feature/x y", "0.0.0+feature-x-y"},
		{"///", "0.0.0-dev"},
	} {
		got := MicroVersion(tc.in)
		if got != tc.want {
			t.Errorf("MicroVersion(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !semverRE.MatchString(got) {
			t.Errorf("MicroVersion(%q) = %q, which micro would refuse", tc.in, got)
		}
	}
}
