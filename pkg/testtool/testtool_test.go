package testtool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder stands in for the testing.TB a test passes to Need, to see
// whether Need fails or skips it.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Fatal(args ...any)         { r.fatal = fmt.Sprint(args...) }
func (r *recorder) Fatalf(f string, a ...any) { r.fatal = fmt.Sprintf(f, a...) }
func (r *recorder) Skip(args ...any)          { r.skip = fmt.Sprint(args...) }
func (r *recorder) Skipf(f string, a ...any)  { r.skip = fmt.Sprintf(f, a...) }

// hide makes every program impossible to find, but those in dir.
func hide(t *testing.T, dir string) {
	oldLook, oldDirs := lookPath, sbinDirs
	lookPath = func(string) (string, error) { return "", errors.New("not found") }
	sbinDirs = []string{dir}
	t.Cleanup(func() { lookPath, sbinDirs = oldLook, oldDirs })
}

func TestMissingFailsInCI(t *testing.T) {
	hide(t, t.TempDir())
	t.Setenv("CI", "true")
	r := &recorder{TB: t}
	if p := Need(r, "named", "apt-get install bind9"); p != "" || r.skip != "" ||
		!strings.Contains(r.fatal, "named not found") || !strings.Contains(r.fatal, "apt-get install bind9") || !strings.Contains(r.fatal, "CI=true") {
		t.Fatalf("with CI=true and no named: path %q, fatal %q, skip %q; want the test failed, saying how to install it", p, r.fatal, r.skip)
	}
}

func TestMissingSkipsElsewhere(t *testing.T) {
	hide(t, t.TempDir())
	t.Setenv("CI", "")
	r := &recorder{TB: t}
	if p := Need(r, "named", "apt-get install bind9"); p != "" || r.fatal != "" || !strings.Contains(r.skip, "apt-get install bind9") {
		t.Fatalf("without CI and no named: path %q, fatal %q, skip %q; want the test skipped, saying how to install it", p, r.fatal, r.skip)
	}
}

func TestFoundInSbinAndThroughTheVariable(t *testing.T) {
	sbin := t.TempDir()
	named := filepath.Join(sbin, "named")
	if err := os.WriteFile(named, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	hide(t, sbin)
	t.Setenv("CI", "true")
	if p := Need(t, "named", "apt-get install bind9"); p != named {
		t.Fatalf("Need(named) = %q, want %q from the sbin directory", p, named)
	}
	t.Setenv("LIFEBOAT_TEST_TOOL", named)
	if p := Need(t, "no-such-tool", "build it", "LIFEBOAT_TEST_TOOL"); p != named {
		t.Fatalf("Need with the variable set = %q, want %q", p, named)
	}
}
