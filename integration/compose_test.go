package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/hosttest"
	"lifeboat.dev/pkg/testtool"
)

// composeHosts are the services of deploy/docker-compose.yml.
var composeHosts = []string{"hot", "cold", "witness"}

// installDocker says how to get what TestCompose drives.
const installDocker = "install the Docker engine and docker-compose v1 (Debian: apt-get install docker.io docker-compose) and start the engine; the deployment test runs deploy/docker-compose.yml for real"

// TestComposeDeployment runs deploy/docker-compose.yml on the real Docker
// engine with credentials from `lifeboat init-cluster`: an image FROM
// scratch over the static binary, three hosts on a private network, each
// with its own volume and only its own secrets. It proves that the three
// form one cluster and apply the same events; that after `docker kill
// hot` the other two keep a quorum and events still flow, and hot catches
// up when started again; that a host cut off the network (`docker network
// disconnect`) reports lost quorum in its own status while the other two
// keep working; and that, reconnected with its service alias, it catches
// up. Everything is removed afterwards (containers, network, volumes,
// image), also when the test fails, after showing the containers' logs.
func TestComposeDeployment(t *testing.T) {
	e := startCompose(t)
	begin := time.Now()
	phase := func(what string) { t.Logf("%6.1fs %s", time.Since(begin).Seconds(), what) }
	e.checkMounts()

	// One cluster of three, and an event every host applies.
	e.waitFormed(composeHosts, 0, 90*time.Second)
	phase("hot, cold and witness form one cluster")
	seq := e.publishHostDown("witness", "ghost-before")
	e.waitFormed(composeHosts, seq, 30*time.Second)
	phase(fmt.Sprintf("HostDown #%d applied on every host", seq))

	// docker kill hot: cold and witness keep a quorum, events flow.
	e.docker(30*time.Second, "kill", e.ids["hot"])
	survivors := []string{"cold", "witness"}
	e.waitQuorum(survivors, 45*time.Second)
	seq = e.publishHostDown("cold", "ghost-hot-killed")
	e.waitApplied(survivors, seq, 30*time.Second)
	phase(fmt.Sprintf("hot killed: cold and witness keep a quorum and applied #%d", seq))

	// hot again, from its volume: it catches up.
	e.docker(30*time.Second, "start", e.ids["hot"])
	e.waitFormed(composeHosts, seq, 60*time.Second)
	phase("hot started again and caught up")

	// cold cut off: it reports lost quorum; hot and witness keep working.
	e.docker(30*time.Second, "network", "disconnect", e.network, e.ids["cold"])
	e.waitLostQuorum("cold", 60*time.Second)
	phase("cold disconnected: its own status reports lost quorum")
	seq = e.publishHostDown("hot", "ghost-cold-cut-off")
	working := []string{"hot", "witness"}
	e.waitQuorum(working, 30*time.Second)
	e.waitApplied(working, seq, 30*time.Second)
	if st, _, err := e.status("cold"); err == nil || st == nil {
		t.Fatalf("cold's status while cut off: exit %v; want it to exit 1 with its problems", err)
	} else if got, ok := st.applied("cold", events.ServiceVolumeMonitor); ok && got >= seq {
		t.Fatalf("cold applied #%d while cut off from the network", got)
	}
	phase(fmt.Sprintf("hot and witness applied #%d without cold", seq))

	// cold back on the network under its service name: it catches up.
	e.docker(30*time.Second, "network", "connect", "--alias", "cold", e.network, e.ids["cold"])
	e.waitFormed(composeHosts, seq, 90*time.Second)
	phase("cold reconnected and caught up")
}

// composeEnv is one run of deploy/docker-compose.yml: a project of its
// own, an image tag of its own.
type composeEnv struct {
	t                *testing.T
	dockerBin        string
	composeBin       string
	file             string // deploy/docker-compose.yml
	project, image   string
	network, secrets string
	ids              map[string]string // service → container id
	operators        int               // operator containers run so far
}

// startCompose builds the image, writes the cluster's credentials and
// starts the three hosts; t.Cleanup tears it all down.
func startCompose(t *testing.T) *composeEnv {
	t.Helper()
	e := &composeEnv{t: t, ids: map[string]string{}}
	e.dockerBin = testtool.Need(t, "docker", installDocker)
	e.composeBin = testtool.Need(t, "docker-compose", installDocker)
	if out, err := e.cmd(30*time.Second, e.dockerBin, "info", "--format", "{{.ServerVersion}}"); err != nil {
		testtool.Missing(t, fmt.Sprintf("the Docker engine does not answer (docker info: %v: %s): %s", err, strings.TrimSpace(out), installDocker))
	}
	deploy := filepath.Join(repoRoot(t), "deploy")
	e.file = filepath.Join(deploy, "docker-compose.yml")
	suffix := randomHex(t, 4)
	e.project = "lifeboate2e" + suffix
	e.image = "lifeboat-e2e:" + suffix
	// Compose v1 names the network <project>_<network>.
	e.network = e.project + "_lifeboat"

	// The image: deploy/Dockerfile over the static binary, in a build
	// context of its own (the repository's deploy/.build is left alone).
	bin := hosttest.Binary(t)
	if err := staticBinary(bin); err != nil {
		t.Fatalf("%v: the image is FROM scratch (build with CGO_ENABLED=0, or unset %s)", err, hosttest.BinaryEnv)
	}
	buildCtx := t.TempDir()
	copyFile(t, filepath.Join(deploy, "Dockerfile"), filepath.Join(buildCtx, "Dockerfile"), 0o644)
	copyFile(t, bin, filepath.Join(buildCtx, ".build", "lifeboat"), 0o755)
	t.Cleanup(func() {
		if out, err := e.cmd(time.Minute, e.dockerBin, "image", "rm", "--force", e.image); err != nil {
			t.Errorf("remove the image %s: %v\n%s", e.image, err, out)
		}
	})
	start := time.Now()
	e.docker(3*time.Minute, "build", "--quiet", "--tag", e.image, buildCtx)
	t.Logf("image %s built in %s", e.image, time.Since(start).Round(100*time.Millisecond))

	// The credentials, as an operator makes them.
	e.secrets = filepath.Join(t.TempDir(), "secrets")
	if out, err := e.cmd(30*time.Second, bin, "init-cluster", "--hosts", strings.Join(composeHosts, ","), "--out", e.secrets); err != nil {
		t.Fatalf("lifeboat init-cluster: %v\n%s", err, out)
	}

	// Torn down whatever happens, after the logs of a failed run.
	t.Cleanup(func() {
		start := time.Now()
		defer func() { t.Logf("torn down in %s", time.Since(start).Round(100*time.Millisecond)) }()
		if t.Failed() {
			out, _ := e.cmd(time.Minute, e.composeBin, e.composeArgs("logs", "--no-color", "--timestamps", "--tail", "300")...)
			t.Logf("---- docker-compose logs ----\n%s", out)
		}
		for i := 1; i <= e.operators; i++ {
			_, _ = e.cmd(30*time.Second, e.dockerBin, "rm", "--force", e.operatorName(i))
		}
		if out, err := e.cmd(2*time.Minute, e.composeBin, e.composeArgs("down", "--volumes", "--remove-orphans", "--timeout", "10")...); err != nil {
			t.Errorf("docker-compose down: %v\n%s", err, out)
		}
	})
	start = time.Now()
	e.compose(2*time.Minute, "up", "--detach", "--no-build")
	for _, h := range composeHosts {
		e.ids[h] = strings.TrimSpace(e.compose(30*time.Second, "ps", "--quiet", h))
		if e.ids[h] == "" {
			t.Fatalf("docker-compose ps: no container for %s", h)
		}
	}
	t.Logf("docker-compose -p %s up in %s", e.project, time.Since(start).Round(100*time.Millisecond))
	return e
}

// checkMounts: each host has its own volume on /data and, read-only, only
// cluster.json and its own seed from the secrets directory.
func (e *composeEnv) checkMounts() {
	e.t.Helper()
	for _, h := range composeHosts {
		var mounts []struct {
			Type, Source, Destination, Name string
			RW                              bool
		}
		out := e.docker(30*time.Second, "inspect", "--format", "{{json .Mounts}}", e.ids[h])
		if err := json.Unmarshal([]byte(out), &mounts); err != nil {
			e.t.Fatalf("docker inspect %s: %v\n%s", h, err, out)
		}
		var got []string
		for _, m := range mounts {
			switch m.Type {
			case "volume":
				got = append(got, fmt.Sprintf("volume %s on %s rw=%v", m.Name, m.Destination, m.RW))
			default:
				got = append(got, fmt.Sprintf("%s %s on %s rw=%v", m.Type, m.Source, m.Destination, m.RW))
			}
		}
		slices.Sort(got)
		want := []string{
			fmt.Sprintf("bind %s on /secrets/%s rw=false", filepath.Join(e.secrets, "cluster.json"), "cluster.json"),
			fmt.Sprintf("bind %s on /secrets/host-%s.nk rw=false", filepath.Join(e.secrets, "host-"+h+".nk"), h),
			fmt.Sprintf("volume %s_%s-data on /data rw=true", e.project, h),
		}
		if !slices.Equal(got, want) {
			e.t.Errorf("%s's mounts:\n  %s\nwant:\n  %s", h, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
	}
}

// status runs `lifeboat status --json` inside host's container, against
// its own node, as that host. It returns the report (nil when none was
// printed) and the command's exit error (status exits 1 with problems).
func (e *composeEnv) status(host string) (*statusDoc, string, error) {
	out, stderr, err := e.run(30*time.Second, e.dockerBin, "exec", e.ids[host],
		"/lifeboat", "status", "--json", "--timeout", "2s",
		"--nats", "nats://127.0.0.1:4222", "--nats-nkey", "/secrets/host-"+host+".nk")
	var doc statusDoc
	if jerr := json.Unmarshal([]byte(out), &doc); jerr != nil {
		return nil, stderr, fmt.Errorf("%s: lifeboat status printed no report (%v, exit %v): %s", host, jerr, err, strings.TrimSpace(stderr+out))
	}
	return &doc, stderr, err
}

// applied is how far service on host has applied the events stream, as
// this report has it.
func (d *statusDoc) applied(host, service string) (uint64, bool) {
	for _, s := range d.Services {
		if s.Service != service {
			continue
		}
		for _, o := range s.Hosts {
			if o.Host == host && o.Status != nil {
				return o.Status.Applied, true
			}
		}
	}
	return 0, false
}

// waitFormed waits until, as each of hosts sees it, exactly these hosts'
// nodes are routed to each other under one meta leader, status finds no
// problem, every service has applied the same position on each of them,
// and volume-monitor (which applies HostDown) has applied seq.
func (e *composeEnv) waitFormed(hosts []string, seq uint64, timeout time.Duration) {
	e.t.Helper()
	testtool.WaitFor(e.t, timeout, func() error {
		for _, h := range hosts {
			st, stderr, err := e.status(h)
			if st == nil {
				return err
			}
			if err != nil || len(st.Problems) > 0 {
				return fmt.Errorf("%s's status: %v %s; problems: %s", h, err, strings.TrimSpace(stderr), strings.Join(st.Problems, "; "))
			}
			if err := routedTogether(st, hosts); err != nil {
				return fmt.Errorf("%s's status: %w", h, err)
			}
			if err := sameApplied(st, hosts, seq); err != nil {
				return fmt.Errorf("%s's status: %w", h, err)
			}
		}
		return nil
	})
}

// waitQuorum waits until each of hosts sees exactly these hosts' nodes
// routed to each other under a meta leader among them: a quorum without
// the others.
func (e *composeEnv) waitQuorum(hosts []string, timeout time.Duration) {
	e.t.Helper()
	testtool.WaitFor(e.t, timeout, func() error {
		for _, h := range hosts {
			st, _, _ := e.status(h)
			if st == nil {
				return fmt.Errorf("%s gave no status", h)
			}
			if err := routedTogether(st, hosts); err != nil {
				return fmt.Errorf("%s's status: %w (problems: %s)", h, err, strings.Join(st.Problems, "; "))
			}
		}
		return nil
	})
}

// waitApplied waits until volume-monitor on each of hosts has applied seq,
// as the first of them reports it.
func (e *composeEnv) waitApplied(hosts []string, seq uint64, timeout time.Duration) {
	e.t.Helper()
	testtool.WaitFor(e.t, timeout, func() error {
		st, _, _ := e.status(hosts[0])
		if st == nil {
			return fmt.Errorf("%s gave no status", hosts[0])
		}
		for _, h := range hosts {
			if got, ok := st.applied(h, events.ServiceVolumeMonitor); !ok || got < seq {
				return fmt.Errorf("%s: volume-monitor applied %d (answering: %v), want #%d (problems: %s)", h, got, ok, seq, strings.Join(st.Problems, "; "))
			}
		}
		return nil
	})
}

// waitLostQuorum waits until host's own status (its node, nothing else
// reachable) exits 1 saying that JetStream has no quorum or no meta
// leader, and shows its node without one.
func (e *composeEnv) waitLostQuorum(host string, timeout time.Duration) {
	e.t.Helper()
	testtool.WaitFor(e.t, timeout, func() error {
		st, _, err := e.status(host)
		if st == nil {
			return err
		}
		i := slices.IndexFunc(st.Nodes, func(n api.NodeInfo) bool { return n.Name == host })
		if i < 0 {
			return fmt.Errorf("%s's status shows no node of its own: %+v", host, st.Nodes)
		}
		lost := slices.ContainsFunc(st.Problems, func(p string) bool {
			return strings.Contains(p, "no JetStream quorum") || strings.Contains(p, "JetStream has no meta leader")
		})
		if err == nil || st.Nodes[i].MetaLeader != "" || !lost {
			return fmt.Errorf("%s's status: exit %v, its node's meta leader %q, problems: %s; want exit 1, no meta leader, a problem saying there is no quorum", host, err, st.Nodes[i].MetaLeader, strings.Join(st.Problems, "; "))
		}
		e.t.Logf("%s's status while cut off: %s", host, strings.Join(st.Problems, "; "))
		return nil
	})
}

// routedTogether: the report shows exactly hosts' nodes, each routed to
// all the others and naming one meta leader among them.
func routedTogether(st *statusDoc, hosts []string) error {
	var names []string
	for _, n := range st.Nodes {
		names = append(names, n.Name)
		for _, other := range hosts {
			if other != n.Name && !slices.Contains(n.Routes, other) {
				return fmt.Errorf("node %s has routes to %v, not to %s", n.Name, n.Routes, other)
			}
		}
		if !slices.Contains(hosts, n.MetaLeader) {
			return fmt.Errorf("node %s follows meta leader %q, want one of %v", n.Name, n.MetaLeader, hosts)
		}
	}
	slices.Sort(names)
	want := slices.Sorted(slices.Values(hosts))
	if !slices.Equal(names, want) {
		return fmt.Errorf("nodes %v answer, want %v", names, want)
	}
	return nil
}

// sameApplied: every service has applied the same position on each of
// hosts, and volume-monitor at least seq.
func sameApplied(st *statusDoc, hosts []string, seq uint64) error {
	for _, s := range st.Services {
		var first uint64
		for i, h := range hosts {
			got, ok := st.applied(h, s.Service)
			switch {
			case !ok:
				return fmt.Errorf("%s on %s does not answer", s.Service, h)
			case i == 0:
				first = got
			case got != first:
				return fmt.Errorf("%s applied #%d on %s but #%d on %s", s.Service, first, hosts[0], got, h)
			}
		}
		if s.Service == events.ServiceVolumeMonitor && first < seq {
			return fmt.Errorf("%s applied #%d, want #%d", s.Service, first, seq)
		}
	}
	return nil
}

// publishHostDown publishes HostDown for a host that does not exist, as an
// operator does: `lifeboat events publish` in a container of its own on the
// private network, with only operator.nk, through via's node. A publish
// refused while a stream elects its leader is tried again. It returns the
// event's sequence in LIFEBOAT_EVENTS.
func (e *composeEnv) publishHostDown(via, ghost string) uint64 {
	e.t.Helper()
	body := fmt.Sprintf(`{"host":%q,"reason":"lifeboat compose test"}`, ghost)
	var seq uint64
	testtool.WaitFor(e.t, 30*time.Second, func() error {
		e.operators++
		out, stderr, err := e.run(time.Minute, e.dockerBin, "run", "--rm", "--name", e.operatorName(e.operators),
			"--network", e.network,
			"--volume", filepath.Join(e.secrets, "operator.nk")+":/secrets/operator.nk:ro",
			e.image, "events", "publish", "--json", "HostDown", body,
			"--nats", "nats://"+via+":4222", "--nats-nkey", "/secrets/operator.nk", "--timeout", "5s")
		if err != nil {
			return fmt.Errorf("lifeboat events publish HostDown through %s: %v: %s", via, err, strings.TrimSpace(stderr+out))
		}
		var ack struct {
			Stream string `json:"stream"`
			Seq    uint64 `json:"seq"`
		}
		if err := json.Unmarshal([]byte(out), &ack); err != nil || ack.Stream != events.StreamEvents || ack.Seq == 0 {
			e.t.Fatalf("lifeboat events publish --json printed %q (%v)", out, err)
		}
		seq = ack.Seq
		return nil
	})
	return seq
}

func (e *composeEnv) operatorName(i int) string { return fmt.Sprintf("%s_operator_%d", e.project, i) }

// composeArgs are docker-compose's arguments for this run's project.
func (e *composeEnv) composeArgs(args ...string) []string {
	return append([]string{"--file", e.file, "--project-name", e.project}, args...)
}

// compose runs docker-compose on the project, failing the test if it fails.
func (e *composeEnv) compose(timeout time.Duration, args ...string) string {
	e.t.Helper()
	out, stderr, err := e.run(timeout, e.composeBin, e.composeArgs(args...)...)
	if err != nil {
		e.t.Fatalf("docker-compose %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return out
}

// docker runs docker, failing the test if it fails.
func (e *composeEnv) docker(timeout time.Duration, args ...string) string {
	e.t.Helper()
	out, stderr, err := e.run(timeout, e.dockerBin, args...)
	if err != nil {
		e.t.Fatalf("docker %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return out
}

// cmd runs a program and returns its output, stdout and stderr together.
func (e *composeEnv) cmd(timeout time.Duration, prog string, args ...string) (string, error) {
	out, stderr, err := e.run(timeout, prog, args...)
	return out + stderr, err
}

// run runs a program with the compose variables set, waiting at most
// timeout.
func (e *composeEnv) run(timeout time.Duration, prog string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var o, s bytes.Buffer
	c := exec.CommandContext(ctx, prog, args...)
	c.Stdout, c.Stderr = &o, &s
	c.Env = append(os.Environ(), "LIFEBOAT_IMAGE="+e.image, "LIFEBOAT_SECRETS="+e.secrets)
	err = c.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s did not finish within %s: %w", filepath.Base(prog), timeout, err)
	}
	return o.String(), s.String(), err
}

// staticBinary says why path is not a statically linked ELF executable,
// or nil when it is: a FROM scratch image has no dynamic loader.
func staticBinary(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", path)
		}
	}
	return nil
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
