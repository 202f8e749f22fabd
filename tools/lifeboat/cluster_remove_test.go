package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/bus"
)

func TestClusterRemoveArguments(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no host", []string{"cluster", "remove"}, 2, "wants 1 argument(s) (HOST), got 0"},
		{"two hosts", []string{"cluster", "remove", "h2", "h3"}, 2, "wants 1 argument(s) (HOST), got 2"},
		{"a dotted name", []string{"cluster", "remove", "h3.example.com"}, 2, `"h3.example.com" is not a host name`},
		{"a bad flag", []string{"cluster", "remove", "h3", "--forse"}, 2, "unknown flag: --forse"},
		{"no control plane", []string{"cluster", "remove", "h3", "--nats", "nats://127.0.0.1:1", "--timeout", "1s"}, 1, "cannot reach the control plane's NATS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			if code := run(tc.args, &out, &out); code != tc.code || !strings.Contains(out.String(), tc.want) {
				t.Fatalf("exit %d, want %d; output:\n%s\nwant it to contain %q", code, tc.code, out.String(), tc.want)
			}
			if tc.code == 2 && !strings.Contains(out.String(), "Usage:") {
				t.Errorf("a usage error without the usage:\n%s", out.String())
			}
		})
	}
}

// liveAndDead is a three-host cluster as status sees it: h1 (leading the
// meta group) and h2 answer; h3 answers per alive, heartbeated
// hbAge seconds ago, and h2's node has a route to it per routed.
func liveAndDead(alive, routed bool, hbAge float64) *statusReport {
	node := func(name string, routes ...string) *api.HostInfo {
		return &api.HostInfo{Host: name, HeartbeatInterval: events.MillisOf(time.Second), Node: &api.NodeInfo{Name: name, Routes: routes, MetaLeader: "h1"}}
	}
	h2Routes := []string{"h1"}
	if routed {
		h2Routes = append(h2Routes, "h3")
	}
	st := &statusReport{MetaLeader: "h1", Hosts: []statusHost{
		{Host: "h1", State: "up", info: node("h1", "h2")},
		{Host: "h2", State: "up", info: node("h2", h2Routes...)},
		{Host: "h3", State: "not answering", HeartbeatAgeSeconds: &hbAge},
	}}
	if alive {
		st.Hosts[2].State, st.Hosts[2].info = "up", node("h3", "h1", "h2")
	}
	for _, h := range st.Hosts {
		if h.info != nil {
			st.Nodes = append(st.Nodes, *h.info.Node)
		}
	}
	return st
}

func TestClusterRemoveSignsOfLife(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		alive, routed bool
		hbAge         float64
		want          []string
	}{
		{"answers", true, true, 0.5, []string{"its lifeboat process answers (lifeboat.api.host.h3.info)", "it heartbeated 500ms ago (every 1s)", "node h2 has a route to its node"}},
		{"heartbeats lately", false, false, 2.2, []string{"it heartbeated 2s ago (every 1s)"}},
		{"a route only", false, true, 60, []string{"node h2 has a route to its node"}},
		{"dead", false, false, 3.5, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := signsOfLife(liveAndDead(tc.alive, tc.routed, tc.hbAge), "h3"); !slices.Equal(got, tc.want) {
				t.Fatalf("signs of life %q, want %q", got, tc.want)
			}
		})
	}
}

func TestClusterRemoveRefusesUnlessForced(t *testing.T) {
	t.Parallel()
	var asked []removePeerRequest
	ask := func(host string, req removePeerRequest, reply *removePeerReply) error {
		if host != "h1" {
			t.Errorf("asked %s, want the meta leader's host h1", host)
		}
		asked = append(asked, req)
		*reply = removePeerReply{Peer: req.Peer, By: host, Meta: "removed", MetaPeers: []string{"h1", "h2"},
			Streams: []streamRemoval{{Stream: events.StreamEvents, Replicas: 3, Peers: []string{"h1", "h2"}, Result: resultShort}}}
		return nil
	}
	rep := clusterRemoveReport{Peer: "h3"}
	err := clusterRemove(context.Background(), &rep, liveAndDead(true, true, 0.5), false, ask)
	if err == nil || !rep.Refused || len(asked) > 0 || !strings.Contains(err.Error(), "refusing to remove h3: it looks alive: its lifeboat process answers") {
		t.Fatalf("a live host: %v (refused %v, asked %v)", err, rep.Refused, asked)
	}

	rep = clusterRemoveReport{Peer: "h3", Force: true}
	if err := clusterRemove(context.Background(), &rep, liveAndDead(true, true, 0.5), true, ask); err != nil || rep.Refused || len(asked) != 1 || !asked[0].Force {
		t.Fatalf("--force: %v (refused %v, asked %+v)", err, rep.Refused, asked)
	}

	rep = clusterRemoveReport{Peer: "h3"}
	if err := clusterRemove(context.Background(), &rep, liveAndDead(false, false, 30), false, ask); err != nil || len(asked) != 2 || asked[1].Force || rep.Result == nil {
		t.Fatalf("a dead host: %v (asked %+v)", err, asked)
	}
	var out bytes.Buffer
	rep.render(&out)
	for _, w := range []string{"h3's node removed from the JetStream meta group (by h1; its nodes now: h1, h2)", "LIFEBOAT_EVENTS  3         h1,h2  2 of 3 replicas until a new node joins",
		"start a replacement host", "--peers <the cluster addresses of h1, h2>,ADDR:PORT", "never start h3 again from its old data directory"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
}

func TestClusterRemoveAsksALiveHost(t *testing.T) {
	t.Parallel()
	st := liveAndDead(false, false, 30)
	st.MetaLeader = "h3" // stale: h3 led the meta group when it died
	if got, err := removerFor(st, "h3"); err != nil || got != "h1" {
		t.Fatalf("removerFor = %q, %v; want h1", got, err)
	}
	st.Hosts[0].info, st.Hosts[1].info = nil, &api.HostInfo{Host: "h2", External: "nats://n1:4222"}
	if _, err := removerFor(st, "h3"); err == nil || !strings.Contains(err.Error(), "nats server raft peer-remove h3") {
		t.Fatalf("an external cluster: %v", err)
	}
	st.Hosts[1].info = nil
	if _, err := removerFor(st, "h3"); err == nil || !strings.Contains(err.Error(), "no other host's lifeboat process answers") {
		t.Fatalf("nobody answers: %v", err)
	}
}

func TestRemovePeerNodeSignsOfLife(t *testing.T) {
	t.Parallel()
	meta := metaGroup{Leader: "h1", Replicas: []metaPeer{
		{Name: "h2", Current: true, Active: 400 * time.Millisecond},
		{Name: "h3"}, // not heard from since h1 was elected
	}}
	node := bus.Node{Name: "h1", Routes: []string{"h2"}}
	if got := nodeSignsOfLife(node, meta, "h3"); len(got) != 0 {
		t.Errorf("h3: %q, want none", got)
	}
	want := []string{"node h1 has a route to its node", "the JetStream meta leader (h1) heard from its node 400ms ago"}
	if got := nodeSignsOfLife(node, meta, "h2"); !slices.Equal(got, want) {
		t.Errorf("h2: %q, want %q", got, want)
	}
	if got := nodeSignsOfLife(bus.Node{Name: "h2"}, meta, "h1"); !slices.Equal(got, []string{"its node leads the JetStream meta group"}) {
		t.Errorf("h1: %q", got)
	}
	if got := meta.peers(); !slices.Equal(got, []string{"h1", "h2", "h3"}) {
		t.Errorf("peers %q", got)
	}
}

func TestRemovePeerStreamResult(t *testing.T) {
	t.Parallel()
	before := streamPlacement{replicas: 3, peers: []string{"h1", "h2", "h3"}}
	for _, tc := range []struct {
		name  string
		after streamPlacement
		want  string
		text  string
	}{
		{"re-placed", streamPlacement{replicas: 3, peers: []string{"h1", "h2", "h4"}}, resultReplaced, "re-placed on h4"},
		{"short", streamPlacement{replicas: 3, peers: []string{"h1", "h2"}}, resultShort, "2 of 3 replicas until a new node joins"},
		{"still listed", before, resultStillListed, "still listed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := removalOf("S", "h3", before, tc.after, "")
			if got.Result != tc.want || removalText(got) != tc.text {
				t.Fatalf("%+v (%q), want %s (%q)", got, removalText(got), tc.want, tc.text)
			}
		})
	}
	r5 := streamPlacement{replicas: 1, peers: []string{"h1", "h3"}}
	if got := removalOf("S", "h3", r5, streamPlacement{replicas: 1, peers: []string{"h1"}}, ""); got.Result != resultRemoved {
		t.Fatalf("one to spare: %+v", got)
	}
}

// TestStatusReplication: status lists the streams with fewer healthy
// replicas than configured, why, and what to do once per cause.
func TestStatusReplication(t *testing.T) {
	t.Parallel()
	leader := statusReplica{Name: "h1", Leader: true, Current: true, State: "leader"}
	r := &statusReport{
		Nodes: []api.NodeInfo{{Name: "h1", MetaPeers: 2}, {Name: "h2", MetaPeers: 2}},
		Streams: []statusStream{
			{Name: events.StreamEvents, Replicas: 3, Leader: "h1", Peers: []statusReplica{leader, {Name: "h2", Current: true, State: "current"}, {Name: "h3", Offline: true, State: "offline"}}},
			{Name: events.StreamCommands, Replicas: 3, Leader: "h1", Peers: []statusReplica{leader, {Name: "h2", Current: true, State: "current"}}},
			{Name: events.StreamDLQ, Replicas: 3, Leader: "h1", Peers: []statusReplica{leader, {Name: "h2", Lag: 7, State: "lagging 7"}, {Name: "h4", Pending: true, State: "joining"}}},
			{Name: "KV_lifeboat-x", Replicas: 3, Leader: "h1", Peers: []statusReplica{leader, {Name: "h2", Current: true}, {Name: "h4", Current: true}}},
			{Name: "single", Replicas: 1, Leader: "h1", Peers: []statusReplica{leader}},
		},
	}
	r.judgeReplication()
	for _, tc := range []struct {
		i           int
		healthy     int
		why, advice string
	}{
		{0, 2, "h3 offline", "if h3 is dead for good, `lifeboat cluster remove h3` and start a replacement host; if it is coming back, wait"},
		{1, 2, "2 of 3 replicas", "start a replacement host: the missing replicas are placed on it"},
		{2, 1, "h2 lagging 7; h4 joining", "wait: h2 is catching up; wait: h4 is catching up"},
	} {
		s := r.Streams[tc.i]
		if s.Healthy == nil || *s.Healthy != tc.healthy || s.Replication != tc.why || s.Advice != tc.advice {
			t.Errorf("%s: healthy %v, %q, %q; want %d, %q, %q", s.Name, s.Healthy, s.Replication, s.Advice, tc.healthy, tc.why, tc.advice)
		}
	}
	for _, s := range r.Streams[3:] {
		if s.Healthy != nil || s.Replication != "" {
			t.Errorf("%s: %q, want healthy", s.Name, s.Replication)
		}
	}
	want := []string{"h3's replicas are offline in 1 stream(s): if h3 is dead for good, run `lifeboat cluster remove h3`",
		"1 stream(s) have fewer replicas than configured (LIFEBOAT_COMMANDS): start a replacement host (`lifeboat up --host NEW",
		"h2 is catching up in 1 stream(s): wait", "h4 is catching up in 1 stream(s): wait"}
	if len(r.Advice) != len(want) {
		t.Fatalf("advice %q", r.Advice)
	}
	for i, w := range want {
		if !strings.HasPrefix(r.Advice[i], w) {
			t.Errorf("advice %d: %q, want it to start %q", i, r.Advice[i], w)
		}
	}
	if p := r.problems(); !slices.Contains(p, "stream LIFEBOAT_COMMANDS: 2 of 3 replicas (a new node takes the missing ones)") || !slices.Contains(p, "stream LIFEBOAT_EVENTS: replica h3 offline") {
		t.Errorf("problems %q", p)
	}
	var out bytes.Buffer
	r.render(&out, false)
	for _, w := range []string{"UNDER-REPLICATED   HEALTHY  WHY", "LIFEBOAT_EVENTS    2 of 3   h3 offline", "what to do: h3's replicas are offline"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("status output lacks %q:\n%s", w, out.String())
		}
	}
}
