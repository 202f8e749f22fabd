// Package hosttest is the one harness for multi-host tests: N real
// `lifeboat up` processes (the built binary), each with its own --host, data
// directory and free ports, their embedded NATS nodes clustered over routes.
// A test stops one cleanly, kills one with SIGKILL, restarts one from its
// data directory, and waits on conditions with deadlines; when it fails,
// every host's log is shown.
package hosttest

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"lifeboat.dev/pkg/testtool"
)

// BinaryEnv names a prebuilt lifeboat binary to use instead of building one.
const BinaryEnv = "LIFEBOAT_BIN"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary returns the lifeboat binary: $LIFEBOAT_BIN, or one built once per
// test process from the workspace's tools/lifeboat.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv(BinaryEnv); p != "" {
		return p
	}
	buildOnce.Do(func() {
		root, err := workspaceRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "lifeboat-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "lifeboat")
		cmd := exec.Command("go", "build", "-o", binPath, "./tools/lifeboat")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("hosttest: go build ./tools/lifeboat: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// workspaceRoot is the directory of the go.work this test runs in.
func workspaceRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOWORK").Output()
	if err != nil {
		return "", fmt.Errorf("hosttest: go env GOWORK: %w", err)
	}
	w := strings.TrimSpace(string(out))
	if w == "" || w == "off" {
		return "", fmt.Errorf("hosttest: not in the lifeboat workspace (no go.work); set %s to a built lifeboat", BinaryEnv)
	}
	return filepath.Dir(w), nil
}

// Host is one `lifeboat up` process of a cluster.
type Host struct {
	Name string
	// Data is the host's data directory; it outlives a kill, for Restart.
	Data string
	// NATS is the client URL of the host's embedded node.
	NATS string
	// HTTP is the host's /healthz, /readyz and /metrics address.
	HTTP string
	// Route is the host's cluster (route) address.
	Route string
	// Seed is the host's NKey seed file when the cluster runs with
	// Options.Auth, else empty.
	Seed string
	// CA verifies the node's certificate when the cluster runs with
	// Options.TLS, else empty.
	CA string

	args []string
	log  *testtool.LockedBuffer
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit, once done is closed
}

// Running says whether the host's process is alive.
func (h *Host) Running() bool {
	if h.cmd == nil {
		return false
	}
	select {
	case <-h.done:
		return false
	default:
		return true
	}
}

// Log is everything the host's processes wrote so far, restarts included.
func (h *Host) Log() string { return h.log.String() }

// Connect opens a NATS connection to the host's node, as the host itself
// when the cluster requires authentication.
func (h *Host) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := h.dial()
	if err != nil {
		t.Fatalf("hosttest: connect to %s (%s): %v", h.Name, h.NATS, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// dial connects to the host's node with its credential, if any.
func (h *Host) dial() (*nats.Conn, error) {
	opts := []nats.Option{nats.Name("hosttest"), nats.Timeout(5 * time.Second)}
	if h.Seed != "" {
		o, err := nats.NkeyOptionFromSeed(h.Seed)
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
	}
	if h.CA != "" {
		opts = append(opts, nats.RootCAs(h.CA))
	}
	return nats.Connect(h.NATS, opts...)
}

// Options shape a cluster.
type Options struct {
	// Hosts is how many processes; default 3.
	Hosts int
	// Config is lifeboat.yaml for every host (the same file, as a site has);
	// empty runs the defaults.
	Config string
	// Args are added to every host's `lifeboat up` command line.
	Args []string
	// Ready bounds the wait for every host's /readyz; default 90 s (a
	// cluster elects its JetStream meta leader first).
	Ready time.Duration
	// Auth secures the cluster: `lifeboat init-cluster` writes the keys
	// into Cluster.Auth and every host starts with --auth.
	Auth bool
	// TLS gives every node a certificate (testtool.Certs) for its client
	// and route ports.
	TLS bool
}

// Cluster is the hosts of one test.
type Cluster struct {
	Hosts []*Host
	// Auth is the directory of the cluster's keys (Options.Auth), else
	// empty.
	Auth  string
	t     testing.TB
	bin   string
	ready time.Duration
}

// Start starts opts.Hosts processes named h1, h2, …, clustered, and returns
// once every one is ready. Each is stopped with SIGKILL when the test ends;
// if the test failed, every host's log is shown.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Hosts <= 0 {
		opts.Hosts = 3
	}
	if opts.Ready <= 0 {
		opts.Ready = 90 * time.Second
	}
	c := &Cluster{t: t, bin: Binary(t), ready: opts.Ready}
	dir := t.TempDir()
	config := ""
	if opts.Config != "" {
		config = filepath.Join(dir, "lifeboat.yaml")
		if err := os.WriteFile(config, []byte(opts.Config), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if opts.Auth {
		c.Auth = filepath.Join(dir, "keys")
		var names []string
		for i := range opts.Hosts {
			names = append(names, fmt.Sprintf("h%d", i+1))
		}
		if out, err := exec.Command(c.bin, "init-cluster", "--hosts", strings.Join(names, ","), "--out", c.Auth).CombinedOutput(); err != nil {
			t.Fatalf("hosttest: lifeboat init-cluster: %v\n%s", err, out)
		}
	}
	var tlsArgs []string
	ca := ""
	if opts.TLS {
		var cert, key string
		ca, cert, key = testtool.Certs(t, dir)
		tlsArgs = []string{"--nats-tls-ca", ca, "--nats-tls-cert", cert, "--nats-tls-key", key}
	}
	ports := testtool.FreePorts(t, 3*opts.Hosts)
	var routes []string
	for i := range opts.Hosts {
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", ports[3*i+2]))
	}
	for i := range opts.Hosts {
		h := &Host{
			Name:  fmt.Sprintf("h%d", i+1),
			Data:  filepath.Join(dir, fmt.Sprintf("h%d", i+1)),
			NATS:  fmt.Sprintf("nats://127.0.0.1:%d", ports[3*i]),
			HTTP:  fmt.Sprintf("127.0.0.1:%d", ports[3*i+1]),
			Route: routes[i],
			log:   &testtool.LockedBuffer{},
		}
		h.args = []string{"up", "--host", h.Name, "--data", h.Data,
			"--nats-listen", strings.TrimPrefix(h.NATS, "nats://"), "--http", h.HTTP}
		if opts.Hosts > 1 {
			h.args = append(h.args, "--cluster-listen", h.Route, "--peers", strings.Join(routes, ","))
		}
		if config != "" {
			h.args = append(h.args, "--config", config)
		}
		if c.Auth != "" {
			h.Seed = filepath.Join(c.Auth, "host-"+h.Name+".nk")
			h.args = append(h.args, "--auth", c.Auth)
		}
		h.CA = ca
		h.args = append(h.args, tlsArgs...)
		h.args = append(h.args, opts.Args...)
		c.Hosts = append(c.Hosts, h)
	}
	t.Cleanup(func() {
		// Every multi-host test ends with the replicas compared.
		if !t.Failed() && len(c.Running()) > 1 {
			if _, err := c.convergedWithin(60 * time.Second); err != nil {
				t.Errorf("hosttest: after the test the hosts disagree: %v", err)
			}
		}
		for _, h := range c.Hosts {
			if h.Running() {
				_ = h.cmd.Process.Kill()
				<-h.done
			}
		}
		if t.Failed() {
			for _, h := range c.Hosts {
				t.Logf("---- log of %s ----\n%s", h.Name, h.Log())
			}
		}
	})
	// Hosts start in any order; none is ready before a majority runs.
	for i := range c.Hosts {
		c.start(i)
	}
	for i := range c.Hosts {
		c.WaitReady(i)
	}
	return c
}

func (c *Cluster) start(i int) {
	c.t.Helper()
	h := c.Hosts[i]
	fmt.Fprintf(h.log, "---- hosttest: starting %s: lifeboat %s\n", h.Name, strings.Join(h.args, " "))
	cmd := exec.Command(c.bin, h.args...)
	cmd.Stdout, cmd.Stderr = h.log, h.log
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("hosttest: start %s: %v", h.Name, err)
	}
	h.cmd, h.done, h.err = cmd, make(chan struct{}), nil
	go func(done chan struct{}) {
		err := cmd.Wait()
		h.err = err
		fmt.Fprintf(h.log, "---- hosttest: %s exited: %v\n", h.Name, err)
		close(done)
	}(h.done)
}

// WaitReady waits until host i answers /readyz with 200.
func (c *Cluster) WaitReady(i int) {
	c.t.Helper()
	h := c.Hosts[i]
	client := &http.Client{Timeout: 2 * time.Second}
	testtool.WaitFor(c.t, c.ready, func() error {
		if !h.Running() {
			// It will not become ready: say so now, not at the deadline.
			c.t.Fatalf("hosttest: %s exited (%v) before it was ready:\n%s", h.Name, h.err, h.Log())
		}
		resp, err := client.Get("http://" + h.HTTP + "/readyz")
		if err != nil {
			return fmt.Errorf("%s not ready: %v", h.Name, err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s not ready: %d %s", h.Name, resp.StatusCode, strings.TrimSpace(b.String()))
		}
		return nil
	})
}

// Kill kills host i with SIGKILL (a crash, a pulled plug) and waits until
// it is gone.
func (c *Cluster) Kill(i int) {
	c.t.Helper()
	h := c.Hosts[i]
	if !h.Running() {
		c.t.Fatalf("hosttest: kill %s: not running", h.Name)
	}
	fmt.Fprintf(h.log, "---- hosttest: kill -9 %s\n", h.Name)
	_ = h.cmd.Process.Kill()
	<-h.done
}

// Stop stops host i with SIGTERM and returns its exit error (nil for a
// clean stop), failing the test if it does not stop within 30 s.
func (c *Cluster) Stop(i int) error {
	c.t.Helper()
	h := c.Hosts[i]
	if !h.Running() {
		c.t.Fatalf("hosttest: stop %s: not running", h.Name)
	}
	fmt.Fprintf(h.log, "---- hosttest: SIGTERM %s\n", h.Name)
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.done:
		return h.err
	case <-time.After(30 * time.Second):
		c.t.Fatalf("hosttest: %s did not stop within 30 s of SIGTERM", h.Name)
		return nil
	}
}

// Restart starts host i again from its data directory, with the same
// command line, and waits until it is ready.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if c.Hosts[i].Running() {
		c.t.Fatalf("hosttest: restart %s: still running", c.Hosts[i].Name)
	}
	c.start(i)
	c.WaitReady(i)
}

// Running are the hosts whose processes are alive.
func (c *Cluster) Running() []*Host {
	var out []*Host
	for _, h := range c.Hosts {
		if h.Running() {
			out = append(out, h)
		}
	}
	return out
}
