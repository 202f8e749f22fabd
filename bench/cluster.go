package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/client"
	"lifeboat.dev/pkg/testtool"
)

// clusterHosts is the smallest real deployment (DESIGN §1): hot, cold and
// a witness.
const clusterHosts = 3

// benchCluster measures three real `lifeboat up` processes clustered over
// routes on this machine (DESIGN §1 "Hosts and the cluster"): n HostDown
// events published through one host's node into the R3 events stream, and
// the time until volume-monitor on every host has applied them all —
// consume, commit and ack on each host, since every host applies every
// event. The peer, `nats bench js pub async` into an R3 stream of the same
// cluster, runs in the same run.
//
// Two bars of DESIGN §5 need service leaders and come later, on the same
// cluster and helpers: handling events after losing any host
// (cluster.kill, cluster.restart) and a leader's takeover within its lease
// TTL + 2 s (bucketLeader finds whom to kill).
func benchCluster(bin string, n int) (*Report, error) {
	r := newReport("cluster")
	ctx := context.Background()
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s: %w (run make build)", bin, err)
	}
	c, err := startCluster(ctx, bin, clusterHosts, clusterConfig)
	if err != nil {
		return nil, err
	}
	defer c.close()
	r.Results["hosts"] = clusterHosts
	r.Results["n"] = n

	// One connection per host, so each host's status is asked through its
	// own node; events go in through the first.
	conns := make([]*nats.Conn, len(c.hosts))
	for i, h := range c.hosts {
		nc, err := nats.Connect(h.natsURL, nats.Name("bench-cluster"), nats.Timeout(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", h.name, err)
		}
		defer nc.Close()
		conns[i] = nc
	}
	js, err := jetstream.New(conns[0])
	if err != nil {
		return nil, err
	}
	if leader, err := streamLeader(ctx, js, events.StreamEvents); err == nil {
		r.Results["events_stream_leader"] = leader
	}
	r.Results["published_through"] = c.hosts[0].name

	// Every host's volume-monitor is caught up before the clock starts, so
	// the measurement is the bench's events alone.
	base, err := streamLastSeq(ctx, js, events.StreamEvents)
	if err != nil {
		return nil, err
	}
	if _, err := waitApplied(ctx, c, conns, 0, base, time.Now(), 2*time.Minute); err != nil {
		return nil, fmt.Errorf("before publishing: %w", err)
	}

	// Hosts apply while the events go in; the clock runs from the first
	// publish to the last host's volume-monitor having applied the last.
	start := time.Now()
	lastSeq, pub, err := publishHostDowns(ctx, js, n)
	if err != nil {
		return nil, err
	}
	progress, err := waitApplied(ctx, c, conns, base, lastSeq, start, 10*time.Minute)
	if err != nil {
		return nil, err
	}
	pubRate := float64(n) / pub.Seconds()
	r.Results["publish_msgs_per_s"] = round(pubRate)
	byHost := map[string]float64{}
	stalls := map[string]float64{}
	slowest := time.Duration(0)
	for name, p := range progress {
		d := p.at.Sub(start)
		byHost[name] = round(float64(n) / d.Seconds())
		stalls[name] = round2(p.stall.Seconds())
		slowest = max(slowest, d)
	}
	consumeRate := float64(n) / slowest.Seconds()
	r.Results["events_per_s_by_host"] = byHost
	r.Results["events_per_s_slowest_host"] = round(consumeRate)
	r.Results["seconds_to_applied_on_every_host"] = round2(slowest.Seconds())
	// A consumer that stops receiving (a pull request stranded on a node
	// that no longer leads the consumer waits out its expiry) shows here
	// rather than as a mysteriously slow host.
	r.Results["longest_stall_s_by_host"] = stalls

	natsRate, err := natsBenchJSPub(c.hosts[0].natsURL, n, "bench.natscli.r3", "BENCH_NATSCLI_R3", clusterHosts, true)
	switch {
	case err != nil:
		return nil, err
	case natsRate == 0:
		r.Results["nats_bench_msgs_per_s"] = "not measured: no nats CLI (make bench builds it)"
	default:
		r.Results["nats_bench_msgs_per_s"] = natsRate
		r.Results["ratio"] = round2(consumeRate / natsRate)
	}
	r.Results["note"] = "ratio is events_per_s_slowest_host / nats_bench_msgs_per_s (nats bench js pub async, 256 B, --dedup, R3 file stream, through the same host's node); longest_stall_s_by_host is the longest a host's applied sequence stood still while polled. " +
		"No verdict on the rate: DESIGN §5's events bar (20k events/s, a quarter of raw publish) is for one service on its own (the events area). " +
		"lease_renewal_recovery_s: kill -9 of the node leading the instance lease bucket's stream (not the holder's) until the holder's next renewal lands; " +
		"leader_takeover_s: kill -9 of a service leader's host until a survivor leads and has reconciled (target: leader lease TTL + 2 s)."

	if err := measureRenewalRecovery(ctx, r, c, conns); err != nil {
		return nil, fmt.Errorf("lease renewal recovery: %w", err)
	}
	if err := measureLeaderTakeover(ctx, r, c, conns); err != nil {
		return nil, fmt.Errorf("leader takeover: %w", err)
	}
	return r, nil
}

// clusterConfig is every host's lifeboat.yaml: one instance on all three
// hosts, so that an instance lease is held (by h1) and renewed.
const clusterConfig = `instances:
  bench:
    hosts:
      h1: {address: 127.0.0.1}
      h2: {address: 127.0.0.1}
      h3: {address: 127.0.0.1}
    active: h1
    standby: h2
    store: {kind: sqlite, path: "{host}/bench.db"}
`

// leaderTTL is the services' leader lease TTL the cluster runs with (the
// default of lifeboat.yaml's leases.leader_ttl).
const leaderTTL = 20 * time.Second

// measureRenewalRecovery kills the node leading the instance lease
// bucket's stream — not the holder's, whose renewals are measured — and
// times how long the holder's renewals stall until a new stream leader
// takes them.
func measureRenewalRecovery(ctx context.Context, r *Report, c *cluster, conns []*nats.Conn) error {
	const bucket, key = "lifeboat-instances", "bench"
	js, err := jetstream.New(conns[0])
	if err != nil {
		return err
	}
	var holder string
	if err := until(ctx, 60*time.Second, func() error {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			return err
		}
		e, err := kv.Get(ctx, key)
		if err != nil {
			return err
		}
		var rec struct {
			Holder string `json:"holder"`
		}
		if err := json.Unmarshal(e.Value(), &rec); err != nil || rec.Holder == "" {
			return fmt.Errorf("lease value %q", e.Value())
		}
		holder = rec.Holder
		return nil
	}); err != nil {
		return fmt.Errorf("the instance lease is not held: %w", err)
	}
	// The stream leader must be another node than the holder's.
	var leader string
	if err := until(ctx, 60*time.Second, func() error {
		var err error
		if leader, err = bucketLeader(ctx, js, bucket); err != nil {
			return err
		}
		if leader == holder || leader == "" {
			_, _ = conns[0].Request("$JS.API.STREAM.LEADER.STEPDOWN.KV_"+bucket, nil, 5*time.Second)
			return fmt.Errorf("the bucket's stream is led by the holder %s", holder)
		}
		return nil
	}); err != nil {
		return err
	}
	victim := c.host(leader)
	if victim == nil {
		return fmt.Errorf("stream leader %q is not a host", leader)
	}
	// Watch the key through a node that survives.
	var watchConn *nats.Conn
	for i, h := range c.hosts {
		if h != victim {
			watchConn = conns[i]
			break
		}
	}
	wjs, err := jetstream.New(watchConn)
	if err != nil {
		return err
	}
	kv, err := wjs.KeyValue(ctx, bucket)
	if err != nil {
		return err
	}
	w, err := kv.Watch(ctx, key, jetstream.UpdatesOnly())
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	// A renewal is due every TTL/10 = 2 s: start right after one.
	select {
	case <-w.Updates():
	case <-time.After(10 * time.Second):
		return errors.New("no renewal within 10 s before the kill")
	}
	killed := time.Now()
	c.kill(victim)
	var recovered time.Duration
	deadline := time.After(60 * time.Second)
	for recovered == 0 {
		select {
		case e := <-w.Updates():
			if e != nil && time.Since(killed) > 100*time.Millisecond {
				recovered = time.Since(killed)
			}
		case <-deadline:
			return fmt.Errorf("no renewal of %s's lease within 60 s of killing %s", holder, victim.name)
		}
	}
	r.Results["lease_renewal_recovery_s"] = round2(recovered.Seconds())
	r.Results["lease_renewal_killed_stream_leader"] = victim.name
	if err := c.restart(ctx, victim); err != nil {
		return err
	}
	return nil
}

// measureLeaderTakeover kills the host leading a service (dns-updater, or
// the first service that has a leader) and times how long until a
// survivor leads it and has reconciled.
func measureLeaderTakeover(ctx context.Context, r *Report, c *cluster, conns []*nats.Conn) error {
	svc, leader := "", ""
	if err := until(ctx, 60*time.Second, func() error {
		for _, name := range append([]string{events.ServiceDNSUpdater}, events.Services...) {
			for i, h := range c.hosts {
				var st api.ServiceStatus
				cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				err := client.CallHost(cctx, conns[i], name, h.name, api.Status, nil, &st)
				cancel()
				if err == nil && st.Leader != nil && st.Leader.Self && st.Leader.ReconciledAt != nil {
					svc, leader = name, h.name
					return nil
				}
			}
		}
		return errors.New("no service has a leader that reconciled")
	}); err != nil {
		return err
	}
	victim := c.host(leader)
	killed := time.Now()
	c.kill(victim)
	var took time.Duration
	var newLeader string
	if err := until(ctx, 3*leaderTTL, func() error {
		for i, h := range c.hosts {
			if h == victim {
				continue
			}
			var st api.ServiceStatus
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := client.CallHost(cctx, conns[i], svc, h.name, api.Status, nil, &st)
			cancel()
			if err == nil && st.Leader != nil && st.Leader.Self && st.Leader.ReconciledAt != nil && st.Leader.ReconciledAt.After(killed) {
				took, newLeader = st.Leader.ReconciledAt.Sub(killed), h.name
				return nil
			}
		}
		return fmt.Errorf("no survivor leads %s yet", svc)
	}); err != nil {
		return err
	}
	target := leaderTTL + 2*time.Second
	r.Results["leader_takeover_s"] = round2(took.Seconds())
	r.Results["leader_takeover_service"] = svc
	r.Results["leader_takeover_from_to"] = leader + " -> " + newLeader
	r.Targets["leader_takeover_within_ttl_plus_2s"] = fmt.Sprintf("<= %s", target)
	r.Verdicts["leader_takeover_within_ttl_plus_2s"] = took <= target
	return c.restart(ctx, victim)
}

// until runs cond until it succeeds or timeout passes.
func until(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// publishHostDowns publishes n HostDown events, each with its own
// Nats-Msg-Id, asynchronously, and returns the stream sequence of the last
// and how long publishing took until every ack was in.
func publishHostDowns(ctx context.Context, js jetstream.JetStream, n int) (uint64, time.Duration, error) {
	start := time.Now()
	futures := make([]jetstream.PubAckFuture, 0, n)
	for i := range n {
		env := bus.NewRawEnvelope(ctx, "bench", "io.lifeboat.host.down.v1", "lifeboat.event.host.down", fmt.Appendf(nil, `{"host":"bench-%d"}`, i))
		f, err := js.PublishMsgAsync(&nats.Msg{Subject: env.Subject, Header: nats.Header(env.Header), Data: env.Body}, jetstream.WithMsgID(env.ID))
		if err != nil {
			return 0, 0, fmt.Errorf("publish HostDown %d: %w", i, err)
		}
		futures = append(futures, f)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		return 0, 0, fmt.Errorf("async publish of %d not acked in 5 minutes", n)
	}
	took := time.Since(start)
	var last uint64
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				return 0, 0, fmt.Errorf("HostDown %d was taken for a duplicate", i)
			}
			last = max(last, ack.Sequence)
		case err := <-f.Err():
			return 0, 0, fmt.Errorf("publish HostDown %d: %w", i, err)
		}
	}
	return last, took, nil
}

// hostProgress is how one host's volume-monitor got to a sequence.
type hostProgress struct {
	at    time.Time     // when it was first seen there
	stall time.Duration // the longest time its applied sequence stood still on the way
}

// waitApplied polls every host's volume-monitor status until its applied
// sequence goes from from to seq and its events consumer has nothing
// pending or unacknowledged, and returns when each host got there and its
// longest stall since since.
func waitApplied(ctx context.Context, c *cluster, conns []*nats.Conn, from, seq uint64, since time.Time, timeout time.Duration) (map[string]hostProgress, error) {
	deadline := time.Now().Add(timeout)
	progress := map[string]hostProgress{}
	last := map[string]string{}
	applied := map[string]uint64{}
	moved := map[string]time.Time{}
	stall := map[string]time.Duration{}
	for _, h := range c.hosts {
		applied[h.name], moved[h.name] = from, since
	}
	for len(progress) < len(c.hosts) {
		for i, h := range c.hosts {
			if _, ok := progress[h.name]; ok {
				continue
			}
			if !h.running() {
				return nil, fmt.Errorf("%s exited (%v):\n%s", h.name, h.err, h.logTail(40))
			}
			done, at, state, err := caughtUp(ctx, conns[i], h.name, seq)
			now := time.Now()
			switch {
			case err != nil:
				last[h.name] = err.Error()
			case at != applied[h.name]:
				applied[h.name], moved[h.name] = at, now
				fallthrough
			default:
				last[h.name] = state
			}
			stall[h.name] = max(stall[h.name], now.Sub(moved[h.name]))
			if done {
				progress[h.name] = hostProgress{at: now, stall: stall[h.name]}
			}
		}
		if len(progress) == len(c.hosts) {
			break
		}
		if time.Now().After(deadline) {
			var lag []string
			for _, h := range c.hosts {
				if _, ok := progress[h.name]; !ok {
					lag = append(lag, h.name+": "+last[h.name])
				}
			}
			return nil, fmt.Errorf("volume-monitor not at sequence %d on every host within %s: %s", seq, timeout, strings.Join(lag, "; "))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return progress, nil
}

// caughtUp says whether host's volume-monitor has applied up to seq with
// nothing left on its events consumer, the sequence it has applied, and
// where it is in words.
func caughtUp(ctx context.Context, nc *nats.Conn, host string, seq uint64) (bool, uint64, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var st api.ServiceStatus
	if err := client.CallHost(ctx, nc, events.ServiceVolumeMonitor, host, api.Status, nil, &st); err != nil {
		return false, 0, "", err
	}
	durable := bus.DurableName(events.ServiceVolumeMonitor, host, "events")
	i := slices.IndexFunc(st.Consumers, func(c api.ConsumerStatus) bool { return c.Durable == durable })
	if i < 0 {
		return false, 0, "", fmt.Errorf("no consumer %s in %s's status", durable, host)
	}
	cs := st.Consumers[i]
	state := fmt.Sprintf("applied %d, pending %d, ack pending %d", st.Applied, cs.Pending, cs.AckPending)
	return st.Applied >= seq && cs.Pending == 0 && cs.AckPending == 0, st.Applied, state, nil
}

func streamLastSeq(ctx context.Context, js jetstream.JetStream, stream string) (uint64, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	return s.CachedInfo().State.LastSeq, nil
}

// streamLeader is the host whose node leads stream's Raft group (a node
// is named for its host).
func streamLeader(ctx context.Context, js jetstream.JetStream, stream string) (string, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", fmt.Errorf("stream %s: %w", stream, err)
	}
	info := s.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", fmt.Errorf("stream %s: no leader now", stream)
	}
	return info.Cluster.Leader, nil
}

// bucketLeader is the host whose node leads KV bucket's stream: the host
// to kill to measure a takeover of what the bucket holds.
func bucketLeader(ctx context.Context, js jetstream.JetStream, bucket string) (string, error) {
	return streamLeader(ctx, js, "KV_"+bucket)
}

// cluster is clusterHosts `lifeboat up` processes of the built binary,
// each with its own --host, data directory and loopback ports, their
// embedded nodes routed to each other (as pkg/hosttest starts them, for a
// program rather than a test).
type cluster struct {
	bin   string
	dir   string
	hosts []*clusterHost
}

// clusterHost is one host's process; its data directory outlives a kill,
// for a restart.
type clusterHost struct {
	name     string
	data     string
	natsURL  string
	httpAddr string
	route    string
	args     []string
	log      *testtool.LockedBuffer

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit, once done is closed
}

// readyTimeout bounds the wait for a host's /readyz: a forming cluster
// elects its JetStream meta leader first.
const readyTimeout = 90 * time.Second

// startCluster starts n hosts h1…hn and returns once every one answers
// /readyz. On error every process started is killed.
func startCluster(ctx context.Context, bin string, n int, config string) (_ *cluster, err error) {
	dir, err := os.MkdirTemp("", "lifeboat-bench-cluster-")
	if err != nil {
		return nil, err
	}
	configPath := filepath.Join(dir, "lifeboat.yaml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return nil, err
	}
	c := &cluster{bin: bin, dir: dir}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	ports, err := freePorts(3 * n)
	if err != nil {
		return nil, err
	}
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", ports[3*i+2]))
	}
	for i := range n {
		h := &clusterHost{
			name:     fmt.Sprintf("h%d", i+1),
			data:     filepath.Join(dir, fmt.Sprintf("h%d", i+1)),
			natsURL:  fmt.Sprintf("nats://127.0.0.1:%d", ports[3*i]),
			httpAddr: fmt.Sprintf("127.0.0.1:%d", ports[3*i+1]),
			route:    routes[i],
			log:      &testtool.LockedBuffer{},
		}
		h.args = []string{"up", "--host", h.name, "--data", h.data,
			"--nats-listen", strings.TrimPrefix(h.natsURL, "nats://"), "--http", h.httpAddr,
			"--cluster-listen", h.route, "--peers", strings.Join(routes, ","), "--log-level", "warn", "--config", configPath}
		c.hosts = append(c.hosts, h)
	}
	// Hosts start in any order; none is ready before a majority runs.
	for _, h := range c.hosts {
		if err := c.start(h); err != nil {
			return nil, err
		}
	}
	for _, h := range c.hosts {
		if err := h.waitReady(ctx, readyTimeout); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *cluster) start(h *clusterHost) error {
	fmt.Fprintf(h.log, "---- bench: starting %s: lifeboat %s\n", h.name, strings.Join(h.args, " "))
	cmd := exec.Command(c.bin, h.args...)
	cmd.Stdout, cmd.Stderr = h.log, h.log
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", h.name, err)
	}
	h.cmd, h.done, h.err = cmd, make(chan struct{}), nil
	go func(done chan struct{}) {
		err := cmd.Wait()
		h.err = err
		fmt.Fprintf(h.log, "---- bench: %s exited: %v\n", h.name, err)
		close(done)
	}(h.done)
	return nil
}

// kill kills h with SIGKILL (a crash, a pulled plug) and waits until it is
// gone.
func (c *cluster) kill(h *clusterHost) {
	if !h.running() {
		return
	}
	fmt.Fprintf(h.log, "---- bench: kill -9 %s\n", h.name)
	_ = h.cmd.Process.Kill()
	<-h.done
}

// restart starts a killed h again from its data directory, with the same
// command line, and waits until it is ready.
func (c *cluster) restart(ctx context.Context, h *clusterHost) error {
	if h.running() {
		return fmt.Errorf("restart %s: still running", h.name)
	}
	if err := c.start(h); err != nil {
		return err
	}
	return h.waitReady(ctx, readyTimeout)
}

// host is the host named name (a stream leader's name), or nil.
func (c *cluster) host(name string) *clusterHost {
	for _, h := range c.hosts {
		if h.name == name {
			return h
		}
	}
	return nil
}

// close kills every host and removes their data.
func (c *cluster) close() {
	for _, h := range c.hosts {
		c.kill(h)
	}
	os.RemoveAll(c.dir)
}

func (h *clusterHost) running() bool {
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

// waitReady polls h's /readyz until it answers 200, h exits, or timeout
// passes; the error carries the tail of h's log.
func (h *clusterHost) waitReady(ctx context.Context, timeout time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	why := "not asked yet"
	for {
		if !h.running() {
			return fmt.Errorf("%s exited (%v) before it was ready:\n%s", h.name, h.err, h.logTail(40))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.httpAddr+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			why = resp.Status
		} else {
			why = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s (%s):\n%s", h.name, timeout, why, h.logTail(40))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// logTail is the last n lines h's processes wrote.
func (h *clusterHost) logTail(n int) string {
	lines := strings.Split(strings.TrimRight(h.log.String(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// freePorts returns n distinct loopback ports that were free a moment ago
// (testtool.FreePorts for a program: all listeners open at once).
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick free loopback ports: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
