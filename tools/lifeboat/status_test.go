package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/testtool"
)

func TestStatusMarkConfigDiffers(t *testing.T) {
	t.Parallel()
	up := func(name, hash string) statusHost {
		return statusHost{Host: name, ConfigHash: hash, info: &api.HostInfo{Host: name, ConfigHash: hash}}
	}
	gone := statusHost{Host: "gone", State: "not answering"}
	cases := []struct {
		name  string
		hosts []statusHost
		want  map[string][]string
	}{
		{"all the same", []statusHost{up("h1", "a"), up("h2", "a"), up("h3", "a")}, nil},
		{"one of three", []statusHost{up("h1", "a"), up("h2", "a"), up("h3", "b")}, map[string][]string{"h3": {"h1", "h2"}}},
		{"no file on one", []statusHost{up("h1", "a"), up("h2", ""), up("h3", "a")}, map[string][]string{"h2": {"h1", "h3"}}},
		{"no majority", []statusHost{up("h1", "a"), up("h2", "b")}, map[string][]string{"h1": {"h2"}, "h2": {"h1"}}},
		{"three ways", []statusHost{up("h1", "a"), up("h2", "b"), up("h3", "c")}, map[string][]string{"h1": {"h2", "h3"}, "h2": {"h1", "h3"}, "h3": {"h1", "h2"}}},
		{"a gone host is not counted", []statusHost{up("h1", "a"), up("h2", "a"), gone}, nil},
		{"heard, not asked", []statusHost{up("h1", "a"), up("h2", "a"), {Host: "h3", ConfigHash: "b", heard: &events.HostHeartbeat{}}}, map[string][]string{"h3": {"h1", "h2"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			markConfigDiffers(tc.hosts)
			for _, h := range tc.hosts {
				if !slices.Equal(h.ConfigDiffers, tc.want[h.Host]) {
					t.Errorf("%s: config differs from %v, want %v", h.Host, h.ConfigDiffers, tc.want[h.Host])
				}
			}
		})
	}
}

func TestStatusReplicaState(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		peer jetstream.PeerInfo
		want string
	}{
		{jetstream.PeerInfo{Name: "h2", Current: true}, "current"},
		{jetstream.PeerInfo{Name: "h2", Lag: 12}, "lagging 12"},
		{jetstream.PeerInfo{Name: "h2"}, "not current"},
		{jetstream.PeerInfo{Name: "h2", Offline: true, Lag: 3}, "offline"},
		{jetstream.PeerInfo{Name: "h2", Offline: true, Active: 14200 * time.Millisecond}, "offline (seen 14s ago)"},
	} {
		if got := replicaOf(&tc.peer).State; got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.peer, got, tc.want)
		}
	}
}

func TestStatusServiceLeader(t *testing.T) {
	t.Parallel()
	on := func(host string, l *api.LeaderStatus) statusOnHost {
		return statusOnHost{Host: host, Running: true, Status: &api.ServiceStatus{Host: host, Leader: l}}
	}
	s := serviceAcross("restore", []statusOnHost{
		on("h1", &api.LeaderStatus{Host: "h1", Epoch: 7, Self: true}),
		on("h2", &api.LeaderStatus{Host: "h1", Epoch: 7}),
		on("h3", &api.LeaderStatus{Host: "h3", Epoch: 6, Self: true}),
		{Host: "h4", Running: true, Error: "no process answers"},
	})
	if s.Leader == nil || s.Leader.Host != "h1" || s.Leader.Epoch != 7 || s.Leader.Self {
		t.Fatalf("leader %+v, want h1 at epoch 7", s.Leader)
	}
	if len(s.Disagree) != 1 || s.Disagree["h3"] != "h3 (epoch 6)" {
		t.Fatalf("disagree %v, want h3 seeing itself at epoch 6", s.Disagree)
	}
	if s := serviceAcross("sync", []statusOnHost{on("h1", nil)}); s.Leader != nil {
		t.Fatalf("a service without a leader: %+v", s.Leader)
	}
}

func TestStatusProblems(t *testing.T) {
	t.Parallel()
	age := 42.0
	r := &statusReport{
		Nodes:      []api.NodeInfo{{Name: "h1", MetaLeader: "h1", MetaPeers: 3, Reachable: 2}},
		MetaLeader: "h1",
		Hosts: []statusHost{
			{Host: "h1", State: "up"},
			{Host: "h2", State: "not answering", Error: "no process answers", HeartbeatAgeSeconds: &age},
			{Host: "h3", State: "down", DownReason: "no heartbeat for 15s"},
			{Host: "h4", State: "up", ConfigDiffers: []string{"h1"}},
		},
		Streams: []statusStream{
			{Name: events.StreamEvents, Replicas: 3, Leader: "h1", Peers: []statusReplica{{Name: "h1", Leader: true}, {Name: "h2", Offline: true}}},
			{Name: events.StreamDLQ, Error: "no answer within 5s"},
		},
		Services: []statusService{
			{Service: "sync", Hosts: []statusOnHost{{Host: "h1", Running: true, Error: "no answer within 5s"}}},
			{Service: "restore", Hosts: []statusOnHost{{Host: "h1"}}}, // not run (--target)
		},
	}
	want := []string{
		"host h2 not answering (no process answers), last heartbeat 42s ago",
		"host h4: config differs from h1",
		"stream LIFEBOAT_EVENTS: replica h2 offline",
		"stream LIFEBOAT_DLQ: no answer within 5s",
		"service sync: no host answers its status (h1: no answer within 5s)",
	}
	if got := r.problems(); !slices.Equal(got, want) {
		t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	r.Nodes[0].Reachable = 1
	r.Nodes[0].MetaLeader = ""
	r.MetaLeader = ""
	got := strings.Join(r.problems(), "\n")
	for _, w := range []string{"node h1: no JetStream quorum, 1 of 3 peers reachable", "JetStream has no meta leader"} {
		if !strings.Contains(got, w) {
			t.Errorf("problems lack %q:\n%s", w, got)
		}
	}
}

func TestStatusAgeText(t *testing.T) {
	t.Parallel()
	for sec, want := range map[float64]string{0.8504: "850ms", 12.4: "12s", 184: "3m4s", 7530: "2h6m", -1: "0s"} {
		if got := ageText(sec); got != want {
			t.Errorf("ageText(%v) = %q, want %q", sec, got, want)
		}
	}
}

// TestStatusOneHost: against one `lifeboat up` with a config file, status
// shows its node, streams and info, the config's hash (which its
// heartbeats carry too), and a host that heartbeated and went away as not
// answering, with the age of its last heartbeat.
func TestStatusOneHost(t *testing.T) {
	config := []byte("heartbeat_interval: 1s\n")
	path := filepath.Join(t.TempDir(), "lifeboat.yaml")
	if err := os.WriteFile(path, config, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(config)
	hash := hex.EncodeToString(sum[:])
	url, _ := startUp(t, "--config", path)
	var nc *nats.Conn
	testtool.WaitFor(t, 30*time.Second, func() (err error) {
		nc, err = nats.Connect(url)
		return err
	})
	defer nc.Close()

	// The heartbeat carries the hash and the interval.
	sub, err := nc.SubscribeSync(events.HeartbeatSubject("test-host"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no heartbeat: %v", err)
	}
	var hb events.HostHeartbeat
	if err := json.Unmarshal(m.Data, &hb); err != nil || hb.ConfigHash != hash || hb.Interval.Duration() != time.Second {
		t.Fatalf("heartbeat %s (%v): want config_hash %s and interval_ms 1000", m.Data, err, hash)
	}

	status := func(args ...string) (statusReport, string, int) {
		var out, errs bytes.Buffer
		code := run(append([]string{"status", "--nats", url, "--timeout", "2s"}, args...), &out, &errs)
		var rep statusReport
		if slices.Contains(args, "--json") {
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("status --json printed %q: %v", out.String(), err)
			}
		}
		return rep, out.String() + errs.String(), code
	}
	testtool.WaitFor(t, 30*time.Second, func() error {
		rep, out, code := status("--json", "--hosts")
		if code != 0 {
			return fmt.Errorf("exit %d:\n%s", code, out)
		}
		if len(rep.Hosts) != 1 || rep.Hosts[0].Host != "test-host" || rep.Hosts[0].Info == nil || rep.Hosts[0].HeartbeatAgeSeconds == nil {
			return fmt.Errorf("hosts %+v, want test-host with its info and a heartbeat", rep.Hosts)
		}
		h := rep.Hosts[0]
		if h.ConfigHash != hash || h.Info.ConfigHash != hash || h.SkewMillis == nil {
			return fmt.Errorf("test-host: config %q (info %q), skew %v; want %s and a skew", h.ConfigHash, h.Info.ConfigHash, h.SkewMillis, hash)
		}
		if i := h.Info; i.Node == nil || i.Node.Name != "test-host" || i.Node.MetaLeader != "test-host" || len(i.Services) != len(events.Services) || i.DataFreeBytes == 0 || i.HeartbeatInterval.Duration() != time.Second {
			return fmt.Errorf("test-host info %+v (node %+v)", i, i.Node)
		}
		if len(rep.Nodes) != 1 || rep.MetaLeader != "test-host" || len(rep.Streams) < 3 || rep.Streams[0].Name != events.StreamEvents {
			return fmt.Errorf("nodes %+v, meta leader %q, streams %+v", rep.Nodes, rep.MetaLeader, rep.Streams)
		}
		for _, s := range rep.Services {
			if len(s.Hosts) != 1 || s.Hosts[0].Status == nil {
				return fmt.Errorf("%s: %+v", s.Service, s.Hosts)
			}
		}
		return nil
	})
	_, out, code := status("--hosts")
	for _, want := range []string{"NODE", "test-host", events.StreamEvents, "APPLIED@test-host", hash[:12], "VERSION"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("status --hosts exit %d, lacks %q:\n%s", code, want, out)
		}
	}

	// A host that heartbeated once and is gone.
	ghost, _ := json.Marshal(events.HostHeartbeat{Host: "ghost", SentAt: time.Now().UTC(), Interval: 1000})
	if err := nc.Publish(events.HeartbeatSubject("ghost"), ghost); err != nil {
		t.Fatal(err)
	}
	testtool.WaitFor(t, 15*time.Second, func() error {
		start := time.Now()
		rep, out, code := status("--json", "--hosts")
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("status took %s with --timeout 2s", took)
		}
		i := slices.IndexFunc(rep.Hosts, func(h statusHost) bool { return h.Host == "ghost" })
		if code == 0 || i < 0 || rep.Hosts[i].State != "not answering" || rep.Hosts[i].HeartbeatAgeSeconds == nil || rep.Hosts[i].Info != nil {
			return fmt.Errorf("exit %d, hosts %+v; want ghost not answering:\n%s", code, rep.Hosts, out)
		}
		return nil
	})
	_, out, _ = status("--hosts")
	if !strings.Contains(out, "ghost") || !strings.Contains(out, "not answering (no process answers)") || !strings.Contains(out, "host ghost not answering") {
		t.Fatalf("status --hosts does not show ghost gone:\n%s", out)
	}
}

// TestStatusShowsTheInstancesActiveHost: `lifeboat up` holds the lease of
// an instance whose preferred active it is, and status names it with the
// epoch; the other host of the instance is not running, and nothing says
// it should hold anything.
func TestStatusShowsTheInstancesActiveHost(t *testing.T) {
	config := filepath.Join(t.TempDir(), "lifeboat.yaml")
	if err := os.WriteFile(config, []byte(`instances:
  wr:
    hosts:
      test-host: {address: 10.0.0.1}
      cold: {address: 10.0.0.2}
    active: test-host
    standby: cold
    store: {kind: sqlite, path: "{host}/wr.db"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	url, logs := startUp(t, "--config", config)
	testtool.WaitFor(t, 30*time.Second, func() error {
		var out, errOut bytes.Buffer
		run([]string{"status", "--json", "--nats", url}, &out, &errOut)
		var rep statusReport
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			return fmt.Errorf("%v: %s%s", err, out.String(), errOut.String())
		}
		if len(rep.Instances) != 1 || rep.Instances[0].Instance != "wr" || rep.Instances[0].Holder != "test-host" || rep.Instances[0].Epoch == 0 {
			return fmt.Errorf("instances %+v, want wr held by test-host", rep.Instances)
		}
		return nil
	})
	if !strings.Contains(logs.String(), "this host is the instance's active host") {
		t.Fatalf("the log does not say test-host became wr's active host:\n%s", logs)
	}
}
