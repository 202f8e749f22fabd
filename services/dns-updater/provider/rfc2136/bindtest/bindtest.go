// Package bindtest starts a real BIND named for tests: a throwaway config
// and zone in a temporary directory, listening on a free loopback port,
// accepting dynamic updates signed with a TSIG key it writes to a file in
// BIND's format. The server is stopped when the test ends.
//
// named comes from Debian's bind9 package. When it is missing, Start fails
// the test if CI=true and skips it otherwise.
package bindtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"lifeboat.dev/pkg/testtool"
)

// Zone is the zone Start serves.
const Zone = "example.test."

// KeyName is the name of the TSIG key allowed to update the zone.
const KeyName = "lifeboat-test."

// Server is a running named.
type Server struct {
	// Addr is the loopback address (host:port) it answers on, UDP and TCP.
	Addr string
	// Zone is the zone it is authoritative for, fully qualified.
	Zone string
	// KeyFile holds the TSIG key allowed to update the zone, in BIND's
	// `key "name" { algorithm hmac-sha256; secret "..."; };` format.
	KeyFile string
	// KeyName and Secret (base64) are the key's contents.
	KeyName, Secret string
	// Dir is the temporary directory holding the config, zone and log.
	Dir string

	cmd *exec.Cmd
}

// DefaultZoneFile returns a minimal master file for zone: SOA, NS and the
// name server's address. Tests append their own records to it.
func DefaultZoneFile(zone string) string {
	return fmt.Sprintf(`$ORIGIN %s
$TTL 300
@   IN SOA ns hostmaster 1 3600 600 604800 60
@   NS ns
ns  A  127.0.0.1
`, dns.Fqdn(zone))
}

// Start runs named serving Zone with DefaultZoneFile.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartZone(t, Zone, DefaultZoneFile(Zone))
}

// StartZone runs named serving zone from the master file text zoneFile,
// and waits until it answers the zone's SOA.
func StartZone(t testing.TB, zone, zoneFile string) *Server {
	t.Helper()
	named := testtool.Need(t, "named", installNamed)
	zone = dns.Fqdn(strings.ToLower(zone))
	secret := make([]byte, 32)
	rand.Read(secret)
	s := &Server{Zone: zone, KeyName: KeyName, Secret: base64.StdEncoding.EncodeToString(secret), Dir: t.TempDir()}
	s.KeyFile = filepath.Join(s.Dir, "tsig.key")
	write(t, s.KeyFile, fmt.Sprintf("key %q {\n\talgorithm hmac-sha256;\n\tsecret %q;\n};\n", s.KeyName, s.Secret))
	zonePath := filepath.Join(s.Dir, "zone.db")
	write(t, zonePath, zoneFile)

	// A free port can be taken between choosing it and named binding it;
	// a few attempts make that race harmless.
	var lastLog string
	for attempt := 0; attempt < 5; attempt++ {
		port := freePort(t)
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		conf := filepath.Join(s.Dir, "named.conf")
		write(t, conf, fmt.Sprintf(`include %q;
options {
	directory %q;
	pid-file %q;
	session-keyfile %q;
	managed-keys-directory %q;
	listen-on port %d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
	allow-transfer { none; };
};
controls { };
zone %q {
	type primary;
	file %q;
	allow-update { key %q; };
};
`, s.KeyFile, s.Dir, filepath.Join(s.Dir, "named.pid"), filepath.Join(s.Dir, "session.key"), s.Dir, port, strings.TrimSuffix(zone, "."), zonePath, s.KeyName))
		logPath := filepath.Join(s.Dir, "named.log")
		logFile, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"-g", "-4", "-c", conf}
		if os.Geteuid() == 0 {
			// named refuses to keep running as root unless told so.
			args = append(args, "-u", "root")
		}
		s.cmd = exec.Command(named, args...)
		s.cmd.Stdout, s.cmd.Stderr = logFile, logFile
		if err := s.cmd.Start(); err != nil {
			logFile.Close()
			t.Fatalf("bindtest: start %s: %v", named, err)
		}
		exited := make(chan struct{})
		go func() { s.cmd.Wait(); logFile.Close(); close(exited) }()
		if s.waitReady(exited) {
			t.Cleanup(func() { s.stop(exited) })
			return s
		}
		s.stop(exited)
		b, _ := os.ReadFile(logPath)
		lastLog = string(b)
		if !strings.Contains(lastLog, "address in use") {
			break
		}
	}
	t.Fatalf("bindtest: named did not start serving %s; its log:\n%s", zone, lastLog)
	return nil
}

// waitReady polls the zone's SOA until named answers it with authority,
// named exits, or 20 seconds pass.
func (s *Server) waitReady(exited <-chan struct{}) bool {
	deadline := time.Now().Add(20 * time.Second)
	c := &dns.Client{Net: "udp", Timeout: 200 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(s.Zone, dns.TypeSOA)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if r, _, err := c.Exchange(m, s.Addr); err == nil && r.Rcode == dns.RcodeSuccess && r.Authoritative {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func (s *Server) stop(exited <-chan struct{}) {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-exited
	}
}

// Log returns what named has logged so far, for failure messages.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "named.log"))
	return string(bytes.TrimSpace(b))
}

// Query asks the server directly (no recursion) and returns its answer.
func (s *Server) Query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = false
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second}
	r, _, err := c.ExchangeContext(ctx, m, s.Addr)
	return r, err
}

// installNamed says how to get named when it is missing.
const installNamed = "install it with `sudo apt-get install bind9` (Debian, Ubuntu), or run `make test`, which installs it"

// freePort returns a loopback port that is free for both UDP and TCP now.
func freePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		pc.Close()
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("bindtest: no free loopback port for UDP and TCP")
	return 0
}

func write(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
