// Package testtool is the test kit every test may import: it depends on
// the standard library only (no NATS, no SQLite), so a test of any package
// can use it without pulling the bus in.
//
// It finds the real programs that tests drive (named, dig, sqlite3, sqlc).
// A missing one fails the test when CI=true, so that a CI run never passes
// by skipping the real part, and skips it elsewhere with a message that
// says how to install it.
//
// It holds the one copy of the small helpers that tests share: WaitFor
// (poll a condition until it holds, failing with its last error),
// FreeAddr and FreePorts (loopback ports for servers a test starts), and
// LockedBuffer (output that a logger or a subprocess writes while the test
// reads it).
package testtool

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Where a program is looked for after $PATH: Debian puts daemons such as
// named in /usr/sbin, which a non-root $PATH often lacks. Variables so that
// the tests of a missing program can hide it.
var (
	lookPath = exec.LookPath
	sbinDirs = []string{"/usr/sbin", "/sbin"}
)

// Need returns the path of prog. When it is not in $PATH nor in /usr/sbin,
// Need fails t if CI=true and skips it otherwise; either way the message
// names prog and says how to get it (install, e.g. "apt-get install
// bind9"). An environment variable in envVar (optional) that names an
// existing file wins over the search, for tools built into a cache
// directory such as sqlc.
func Need(t testing.TB, prog, install string, envVar ...string) string {
	t.Helper()
	for _, v := range envVar {
		if p := os.Getenv(v); p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if p, err := lookPath(prog); err == nil {
		return p
	}
	for _, dir := range sbinDirs {
		p := filepath.Join(dir, prog)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	Missing(t, fmt.Sprintf("%s not found in $PATH or /usr/sbin: %s", prog, install))
	return ""
}

// Missing ends t for a real component that is not there: it fails when
// CI=true and skips otherwise.
func Missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: a missing real component fails the test instead of skipping it)")
		return
	}
	t.Skip(msg)
}

// Dig runs `dig @host -p port +norecurse +time=5 +tries=1 ARGS...` against
// the DNS server at addr (host:port), as an operator would after a
// failover, and returns its output without surrounding white space. A
// missing dig is handled as Need does.
func Dig(t testing.TB, addr string, args ...string) string {
	t.Helper()
	dig := Need(t, "dig", "apt-get install bind9-dnsutils (make test installs it)")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	args = append([]string{"@" + host, "-p", port, "+norecurse", "+time=5", "+tries=1"}, args...)
	out, err := exec.Command(dig, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}
