package files

import "testing"

func TestPatternMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		path    string
		isDir   bool
		want    bool
	}{
		{"data/", "data", true, true},
		{"data/", "data", false, false}, // a file named data is not the data/ directory
		{"data/", "lib/data", true, true},
		{"/data/", "lib/data", true, false},
		{"/data", "data", false, true},
		{"license.dat", "license.dat", false, true},
		{"license.dat", "sub/license.dat", false, true},
		{"*.log", "logs/a.log", false, true},
		{"*.log", "a.log.gz", false, false},
		{"data/backups", "data/backups", true, true},
		{"data/backups", "x/data/backups", true, false},
		{"data/*", "data/backups", true, true},
		{"data/*", "data/backups/x", false, false}, // * never crosses a slash
		{"[ab]?c", "bxc", false, true},
	} {
		ps, err := parsePatterns([]string{tc.pattern})
		if err != nil {
			t.Fatal(err)
		}
		if got := ps[0].match(tc.path, tc.isDir); got != tc.want {
			t.Errorf("%q matching %q (dir %v) = %v, want %v", tc.pattern, tc.path, tc.isDir, got, tc.want)
		}
	}
}

func FuzzParsePatterns(f *testing.F) {
	for _, s := range []string{"data/", "/a/b", "*.log", "[", "//", "a/**/b"} {
		f.Add(s, "a/b/c")
	}
	f.Fuzz(func(t *testing.T, pattern, rel string) {
		ps, err := parsePatterns([]string{pattern})
		if err != nil {
			return
		}
		// A compiled pattern never panics and a dir-only one never matches a file.
		if ps[0].match(rel, false) && ps[0].dirOnly {
			t.Fatalf("dir-only %q matched the file %q", pattern, rel)
		}
		ps[0].match(rel, true)
	})
}
