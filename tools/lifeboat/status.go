package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/client"
)

func newStatusCmd() *cobra.Command {
	var cf clientFlags
	var hosts bool
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the cluster: nodes, streams, hosts and every service on every host",
		Long: `Show the control plane as the cluster sees it: each NATS node with its
routes and the JetStream meta leader; each stream's and bucket's replicas
(current, lagging N, offline); every host that heartbeats, with its last
heartbeat's age and whether its lifeboat.yaml differs from the others';
each service's leader and epoch, and the event stream position it has
applied on each host. --hosts adds each host's version, uptime, services
and free space in its data directory. A host that is gone is shown as
such; every request waits at most --timeout. Exits 1 when something is
wrong (a host or service not answering, a config that differs, a stream
without a leader), after showing it.`,
		Example: `  lifeboat status
  lifeboat status --hosts
  lifeboat status --json --hosts --timeout 2s`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			nc, js, err := cf.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			rep := gatherStatus(c.Context(), nc, js, cf.timeout, hosts)
			if cf.json {
				if err := printJSON(c.OutOrStdout(), rep); err != nil {
					return err
				}
			} else {
				rep.render(c.OutOrStdout(), hosts)
			}
			if n := len(rep.Problems); n > 0 {
				return fmt.Errorf("%d problem(s): %s", n, strings.Join(rep.Problems, "; "))
			}
			return nil
		},
	}
	cf.add(c)
	c.Flags().BoolVar(&hosts, "hosts", false, "add each host's version, uptime, services and data directory's free space")
	return c
}

// statusReport is what `lifeboat status` shows, and prints with --json.
type statusReport struct {
	// Nodes are the embedded NATS nodes, as each host's info gives its own.
	Nodes []api.NodeInfo `json:"nodes"`
	// MetaLeader is the JetStream meta leader most nodes name.
	MetaLeader string `json:"meta_leader,omitempty"`
	// External is the external NATS server a host uses (--nats), when
	// hosts use one: its nodes are not lifeboat's to show.
	External string `json:"external_nats,omitempty"`
	// Streams are the streams, the buckets' (KV_, OBJ_) included.
	Streams []statusStream `json:"streams"`
	// StreamsError says why the streams could not be listed.
	StreamsError string `json:"streams_error,omitempty"`
	// Advice says what to do about the streams whose replicas are fewer
	// than configured, offline or lagging: one sentence per cause (a
	// host's replicas offline, streams short of a replica, a host
	// catching up).
	Advice   []string        `json:"advice,omitempty"`
	Hosts    []statusHost    `json:"hosts"`
	Services []statusService `json:"services"`
	// Instances are the instances' leases: who is active, in which epoch.
	Instances []api.InstanceLease `json:"instances,omitempty"`
	// Problems are what is wrong, one sentence each.
	Problems []string `json:"problems,omitempty"`
}

// instanceLeases merges what the hosts say of the instances' leases (the
// bucket is one; a host lists the instances it may hold), with every
// host's declines summed.
func instanceLeases(infos []*api.HostInfo) []api.InstanceLease {
	byName := map[string]*api.InstanceLease{}
	for _, info := range infos {
		if info == nil {
			continue
		}
		for _, il := range info.Instances {
			cur, ok := byName[il.Instance]
			if !ok {
				c := il
				byName[il.Instance] = &c
				continue
			}
			cur.Declined += il.Declined
			if il.Epoch > cur.Epoch {
				cur.Holder, cur.Epoch = il.Holder, il.Epoch
			}
		}
	}
	out := []api.InstanceLease{}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		out = append(out, *byName[name])
	}
	return out
}

// statusStream is one stream and its replicas.
type statusStream struct {
	Name     string          `json:"name"`
	Replicas int             `json:"replicas"`
	Leader   string          `json:"leader,omitempty"`
	Peers    []statusReplica `json:"peers,omitempty"`
	Messages uint64          `json:"messages"`
	LastSeq  uint64          `json:"last_seq"`
	Error    string          `json:"error,omitempty"`
	// Healthy counts the replicas that are current (the leader's
	// included), when fewer are than configured.
	Healthy *int `json:"healthy_replicas,omitempty"`
	// Replication says why, when fewer replicas are healthy than
	// configured: "2 of 3 replicas", "h3 offline", "h3 lagging 12".
	Replication string `json:"replication,omitempty"`
	// Advice is what to do about it.
	Advice string `json:"advice,omitempty"`
}

// statusReplica is one replica of a stream.
type statusReplica struct {
	Name    string `json:"name"`
	Leader  bool   `json:"leader,omitempty"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline,omitempty"`
	// Pending says the replica is placed on the node but has not joined
	// the stream's group yet.
	Pending bool   `json:"pending,omitempty"`
	Lag     uint64 `json:"lag,omitempty"`
	// ActiveSeconds is how long ago the leader last heard from it.
	ActiveSeconds float64 `json:"active_seconds,omitempty"`
	// State says it in words: leader, current, lagging N, offline.
	State string `json:"state"`
}

// statusHost is one host: from its heartbeats, volume-monitor's record of
// them, and its own info endpoint.
type statusHost struct {
	Host string `json:"host"`
	// State is up (answering), not answering, or down (volume-monitor
	// applied HostDown for it).
	State string `json:"state"`
	// Error says why the host does not answer.
	Error string `json:"error,omitempty"`
	// DownReason is HostDown's reason, for a host that is down.
	DownReason string `json:"down_reason,omitempty"`
	// LastHeartbeat is when the host last heartbeated (by its clock).
	LastHeartbeat *time.Time `json:"last_heartbeat,omitempty"`
	// HeartbeatAgeSeconds is the last heartbeat's age when status ran.
	HeartbeatAgeSeconds *float64 `json:"heartbeat_age_seconds,omitempty"`
	// SkewMillis is how far the host's clock is ahead of this one's (its
	// info's now against the middle of the request), within half the
	// request's round trip; absent when the host does not answer.
	SkewMillis *int64 `json:"skew_ms,omitempty"`
	// ConfigHash is the SHA-256 of the host's lifeboat.yaml; ConfigDiffers
	// names the hosts whose config it differs from, when it does.
	ConfigHash    string   `json:"config_hash,omitempty"`
	ConfigDiffers []string `json:"config_differs_from,omitempty"`
	// Info is the host's own info (with --hosts).
	Info *api.HostInfo `json:"info,omitempty"`

	info  *api.HostInfo         // always gathered; shown with --hosts
	heard *events.HostHeartbeat // heard while status ran
}

// statusService is one service across the hosts.
type statusService struct {
	Service string `json:"service"`
	// Leader is the service's leader as most hosts see it; Disagree names
	// the hosts that see another (host → its leader).
	Leader   *api.LeaderStatus `json:"leader,omitempty"`
	Disagree map[string]string `json:"leader_disagree,omitempty"`
	Hosts    []statusOnHost    `json:"hosts"`
}

// statusOnHost is one service on one host.
type statusOnHost struct {
	Host string `json:"host"`
	// Running is false when the host's process does not run the service
	// (--target).
	Running bool               `json:"running"`
	Status  *api.ServiceStatus `json:"status,omitempty"`
	Error   string             `json:"error,omitempty"`
}

// gatherStatus asks the cluster everything status shows. Each request
// waits at most timeout; the hosts are found first (volume-monitor's host
// table, the lifeboat-host services that answer a ping, heartbeats heard),
// then each is asked its info and each service's status, all at once.
func gatherStatus(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, timeout time.Duration, withInfo bool) *statusReport {
	rep := &statusReport{}
	var mu sync.Mutex
	heard := map[string]*events.HostHeartbeat{}
	sub, err := nc.Subscribe(events.SubjectHeartbeats, func(m *nats.Msg) {
		var hb events.HostHeartbeat
		if json.Unmarshal(m.Data, &hb) != nil || hb.Host == "" {
			return
		}
		mu.Lock()
		heard[hb.Host] = &hb
		mu.Unlock()
	})
	if err == nil {
		defer func() { _ = sub.Unsubscribe() }()
	}

	var streamsDone sync.WaitGroup
	streamsDone.Go(func() { rep.Streams, rep.StreamsError = gatherStreams(ctx, js, timeout) })

	// Who is there.
	var known []api.Host
	var knownErr error
	var pinged []string
	var found sync.WaitGroup
	found.Go(func() { knownErr = call(ctx, nc, timeout, events.ServiceVolumeMonitor, api.Hosts, nil, &known) })
	found.Go(func() { pinged, _ = client.Hosts(ctx, nc, api.HostService, nil, 300*time.Millisecond, timeout) })
	found.Wait()
	names := map[string]bool{}
	for _, h := range known {
		names[h.Host] = true
	}
	for _, h := range pinged {
		names[h] = true
	}
	mu.Lock()
	for h := range heard {
		names[h] = true
	}
	mu.Unlock()
	if len(names) == 0 {
		// An older lifeboat, or none: whoever answers each service.
		answered := make([]string, len(events.Services))
		var wg sync.WaitGroup
		for i, svc := range events.Services {
			wg.Go(func() {
				var st api.ServiceStatus
				if call(ctx, nc, timeout, svc, api.Status, nil, &st) == nil {
					answered[i] = st.Host
				}
			})
		}
		wg.Wait()
		for _, h := range answered {
			if h != "" {
				names[h] = true
			}
		}
	}
	hostNames := slices.Sorted(maps.Keys(names))

	// Ask every host, everything at once.
	infos := make([]*api.HostInfo, len(hostNames))
	infoErrs := make([]error, len(hostNames))
	skews := make([]int64, len(hostNames))
	statuses := make([][]statusOnHost, len(events.Services))
	for i := range statuses {
		statuses[i] = make([]statusOnHost, len(hostNames))
	}
	var asked sync.WaitGroup
	for hi, host := range hostNames {
		asked.Go(func() {
			var info api.HostInfo
			sent := time.Now()
			if infoErrs[hi] = callHost(ctx, nc, timeout, api.HostService, host, api.HostInfoEndpoint, &info); infoErrs[hi] == nil {
				infos[hi] = &info
				// The host read its clock about half way through.
				rtt := time.Since(sent)
				skews[hi] = info.Now.Sub(sent.Add(rtt / 2)).Milliseconds()
			}
		})
		for si, svc := range events.Services {
			asked.Go(func() {
				var st api.ServiceStatus
				on := statusOnHost{Host: host, Running: true}
				if err := callHost(ctx, nc, timeout, svc, host, api.Status, &st); err != nil {
					on.Error = answerError(err)
				} else {
					on.Status = &st
				}
				statuses[si][hi] = on
			})
		}
	}
	asked.Wait()
	now := time.Now()
	mu.Lock()
	for i, name := range hostNames {
		h := statusHost{Host: name, State: "up", info: infos[i], heard: heard[name]}
		if infoErrs[i] != nil {
			h.State, h.Error = "not answering", answerError(infoErrs[i])
		}
		if infos[i] != nil {
			h.ConfigHash = infos[i].ConfigHash
			if !infos[i].Now.IsZero() {
				h.SkewMillis = &skews[i]
			}
			if withInfo {
				h.Info = infos[i]
			}
		}
		if k := slices.IndexFunc(known, func(k api.Host) bool { return k.Host == name }); k >= 0 {
			h.LastHeartbeat = known[k].LastSeen
			if known[k].State == "down" && infoErrs[i] != nil {
				h.State, h.DownReason = "down", known[k].Reason
			}
		}
		if hb := h.heard; hb != nil {
			h.LastHeartbeat = &hb.SentAt
			if infos[i] == nil {
				h.ConfigHash = hb.ConfigHash
			}
		}
		if h.LastHeartbeat != nil {
			age := now.Sub(*h.LastHeartbeat).Seconds()
			h.HeartbeatAgeSeconds = &age
		}
		rep.Hosts = append(rep.Hosts, h)
	}
	mu.Unlock()
	markConfigDiffers(rep.Hosts)
	rep.Instances = instanceLeases(infos)

	for i, info := range infos {
		if info == nil {
			continue
		}
		if info.Node != nil {
			rep.Nodes = append(rep.Nodes, *info.Node)
		} else if info.External != "" {
			rep.External = info.External
		}
		// A host that answers but does not run a service is not asked it.
		for si, svc := range events.Services {
			if !slices.Contains(info.Services, svc) {
				statuses[si][i] = statusOnHost{Host: hostNames[i]}
			}
		}
	}
	rep.MetaLeader = majority(rep.Nodes, func(n api.NodeInfo) string { return n.MetaLeader })
	for si, svc := range events.Services {
		rep.Services = append(rep.Services, serviceAcross(svc, statuses[si]))
	}
	streamsDone.Wait()
	if knownErr != nil && client.Code(knownErr) != "" {
		rep.Problems = append(rep.Problems, "volume-monitor's host table: "+answerError(knownErr))
	}
	rep.judgeReplication()
	rep.Problems = append(rep.Problems, rep.problems()...)
	return rep
}

// callHost asks host's process a host-scoped question, waiting at most
// timeout.
func callHost(parent context.Context, nc *nats.Conn, timeout time.Duration, service, host, endpoint string, reply any) error {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	return client.CallHost(ctx, nc, service, host, endpoint, nil, reply)
}

// answerError is what a failed request says, shortest first.
func answerError(err error) string {
	var ae *client.Error
	var ne *client.NoAnswerError
	switch {
	case errors.As(err, &ae):
		return ae.Message
	case errors.As(err, &ne) && errors.Is(ne.Err, nats.ErrNoResponders):
		return "no process answers"
	case errors.As(err, &ne):
		return fmt.Sprintf("no answer within %s", ne.Waited.Round(time.Millisecond))
	}
	return err.Error()
}

// gatherStreams lists every stream with its replicas. Listing needs the
// JetStream meta leader; without one, lifeboat's three streams are asked
// by name (each needs its own leader).
func gatherStreams(parent context.Context, js jetstream.JetStream, timeout time.Duration) ([]statusStream, string) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	var out []statusStream
	l := js.ListStreams(ctx)
	for info := range l.Info() {
		out = append(out, streamOf(info))
	}
	listErr := l.Err()
	if listErr == nil {
		slices.SortFunc(out, func(a, b statusStream) int { return cmp.Compare(streamOrder(a.Name), streamOrder(b.Name)) })
		return out, ""
	}
	names := []string{events.StreamEvents, events.StreamCommands, events.StreamDLQ}
	out = make([]statusStream, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(parent, timeout)
			defer cancel()
			out[i] = statusStream{Name: name}
			if info, err := streamInfo(ctx, js, name); err != nil {
				out[i].Error = streamError(err, timeout)
			} else {
				out[i] = streamOf(info)
			}
		})
	}
	wg.Wait()
	return out, "streams not listed: " + streamError(listErr, timeout)
}

func streamInfo(ctx context.Context, js jetstream.JetStream, name string) (*jetstream.StreamInfo, error) {
	st, err := js.Stream(ctx, name) // asks the stream's info
	if err != nil {
		return nil, err
	}
	return st.CachedInfo(), nil
}

// streamOrder puts lifeboat's streams first, then the rest by name.
func streamOrder(name string) string {
	if i := slices.Index([]string{events.StreamEvents, events.StreamCommands, events.StreamDLQ}, name); i >= 0 {
		return fmt.Sprintf("0%d", i)
	}
	return "1" + name
}

func streamError(err error, timeout time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
		return fmt.Sprintf("no answer within %s (no leader: is a majority of the nodes running?)", timeout)
	}
	return err.Error()
}

// streamOf is a stream as status shows it.
func streamOf(info *jetstream.StreamInfo) statusStream {
	s := statusStream{Name: info.Config.Name, Replicas: info.Config.Replicas, Messages: info.State.Msgs, LastSeq: info.State.LastSeq}
	if ci := info.Cluster; ci != nil {
		s.Leader = ci.Leader
		if ci.Leader != "" {
			s.Peers = append(s.Peers, statusReplica{Name: ci.Leader, Leader: true, Current: true, State: "leader"})
		}
		for _, p := range ci.Replicas {
			s.Peers = append(s.Peers, replicaOf(p))
		}
	}
	return s
}

// replicaOf says how a replica stands: current, lagging N, or offline.
func replicaOf(p *jetstream.PeerInfo) statusReplica {
	r := statusReplica{Name: p.Name, Current: p.Current, Offline: p.Offline, Pending: p.Pending, Lag: p.Lag, ActiveSeconds: p.Active.Seconds()}
	switch {
	case p.Offline:
		r.State = "offline"
		if p.Active > 0 {
			r.State = fmt.Sprintf("offline (seen %s ago)", p.Active.Round(time.Second))
		}
	case p.Pending && !p.Current:
		r.State = "joining"
	case p.Current:
		r.State = "current"
	case p.Lag > 0:
		r.State = fmt.Sprintf("lagging %d", p.Lag)
	default:
		r.State = "not current"
	}
	return r
}

// markConfigDiffers flags the hosts whose config hash differs: from the
// majority's hosts when a strict majority shares one hash, otherwise from
// every host whose hash is not its own. Hosts whose hash is unknown (gone,
// never heard) are left out.
func markConfigDiffers(hosts []statusHost) {
	byHash := map[string][]string{}
	var n int
	for _, h := range hosts {
		if h.info != nil || h.heard != nil {
			byHash[h.ConfigHash] = append(byHash[h.ConfigHash], h.Host)
			n++
		}
	}
	if len(byHash) < 2 {
		return
	}
	var major string
	hasMajor := false
	for hash, hs := range byHash {
		if 2*len(hs) > n {
			major, hasMajor = hash, true
		}
	}
	for i := range hosts {
		h := &hosts[i]
		if h.info == nil && h.heard == nil {
			continue
		}
		switch {
		case hasMajor && h.ConfigHash != major:
			h.ConfigDiffers = byHash[major]
		case !hasMajor:
			for hash, hs := range byHash {
				if hash != h.ConfigHash {
					h.ConfigDiffers = append(h.ConfigDiffers, hs...)
				}
			}
			slices.Sort(h.ConfigDiffers)
		}
	}
}

// serviceAcross is one service as its hosts answer: the leader most of
// them see, and the hosts that see another.
func serviceAcross(svc string, on []statusOnHost) statusService {
	s := statusService{Service: svc, Hosts: on}
	var views []api.LeaderStatus
	for _, o := range on {
		if o.Status != nil && o.Status.Leader != nil {
			views = append(views, *o.Status.Leader)
		}
	}
	key := func(l api.LeaderStatus) string { return fmt.Sprintf("%s@%d", l.Host, l.Epoch) }
	if k := majority(views, key); k != "" {
		i := slices.IndexFunc(views, func(l api.LeaderStatus) bool { return key(l) == k })
		l := views[i]
		l.Self = false
		s.Leader = &l
		for _, o := range on {
			if o.Status != nil && o.Status.Leader != nil && key(*o.Status.Leader) != k {
				if s.Disagree == nil {
					s.Disagree = map[string]string{}
				}
				s.Disagree[o.Host] = leaderText(o.Status.Leader)
			}
		}
	}
	return s
}

// majority is the value most items give (the smallest among ties), or ""
// when none gives one.
func majority[T any](items []T, value func(T) string) string {
	count := map[string]int{}
	for _, it := range items {
		if v := value(it); v != "" {
			count[v]++
		}
	}
	best := ""
	for _, v := range slices.Sorted(maps.Keys(count)) {
		if count[v] > count[best] {
			best = v
		}
	}
	return best
}

func leaderText(l *api.LeaderStatus) string {
	if l.Host == "" {
		return "none"
	}
	return fmt.Sprintf("%s (epoch %d)", l.Host, l.Epoch)
}

// problems are what is wrong, as the report shows it.
func (r *statusReport) problems() []string {
	var out []string
	for _, h := range r.Hosts {
		switch {
		case h.State == "not answering":
			msg := fmt.Sprintf("host %s not answering (%s)", h.Host, h.Error)
			if h.HeartbeatAgeSeconds != nil {
				msg += fmt.Sprintf(", last heartbeat %s ago", ageText(*h.HeartbeatAgeSeconds))
			}
			out = append(out, msg)
		case len(h.ConfigDiffers) > 0:
			out = append(out, fmt.Sprintf("host %s: config differs from %s", h.Host, strings.Join(h.ConfigDiffers, ", ")))
		}
		if h.info != nil && h.info.SkewError != "" {
			out = append(out, fmt.Sprintf("host %s: %s", h.Host, h.info.SkewError))
		}
	}
	for _, il := range r.Instances {
		if il.Holder == "" {
			msg := fmt.Sprintf("instance %s has no active host (nobody holds its lease)", il.Instance)
			if il.Declined > 0 {
				msg += "; its hosts' stores do not carry the highest epoch taken: see the README on failover"
			}
			out = append(out, msg)
		}
	}
	for _, n := range r.Nodes {
		if n.Reachable < n.MetaPeers/2+1 {
			out = append(out, fmt.Sprintf("node %s: no JetStream quorum, %d of %d peers reachable", n.Name, n.Reachable, n.MetaPeers))
		}
	}
	if len(r.Nodes) > 0 && r.MetaLeader == "" {
		out = append(out, "JetStream has no meta leader: a majority of the nodes must run")
	}
	if r.StreamsError != "" {
		out = append(out, r.StreamsError)
	}
	for _, s := range r.Streams {
		switch {
		case s.Error != "":
			out = append(out, fmt.Sprintf("stream %s: %s", s.Name, s.Error))
		case s.Replicas > 1 && s.Leader == "":
			out = append(out, fmt.Sprintf("stream %s: no leader", s.Name))
		}
		offline := false
		for _, p := range s.Peers {
			if p.Offline {
				offline = true
				out = append(out, fmt.Sprintf("stream %s: replica %s offline", s.Name, p.Name))
			}
		}
		// An offline replica is the problem to act on first; once its
		// node is removed, the replica it leaves missing is.
		if s.Error == "" && !offline && len(s.Peers) > 0 && len(s.Peers) < s.Replicas {
			out = append(out, fmt.Sprintf("stream %s: %d of %d replicas (a new node takes the missing ones)", s.Name, len(s.Peers), s.Replicas))
		}
	}
	for _, s := range r.Services {
		answering := slices.ContainsFunc(s.Hosts, func(o statusOnHost) bool { return o.Status != nil })
		running := slices.ContainsFunc(s.Hosts, func(o statusOnHost) bool { return o.Running })
		if running && !answering {
			var why []string
			for _, o := range s.Hosts {
				if o.Running {
					why = append(why, o.Host+": "+o.Error)
				}
			}
			out = append(out, fmt.Sprintf("service %s: no host answers its status (%s)", s.Service, strings.Join(why, "; ")))
		}
	}
	return out
}

// render writes the report as tables.
func (r *statusReport) render(w io.Writer, withInfo bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	switch {
	case len(r.Nodes) > 0:
		leader := r.MetaLeader
		if leader == "" {
			leader = "none"
		}
		fmt.Fprintf(tw, "NODE\tCLUSTER\tROUTES\tMETA-LEADER\tMETA\tPEERS\n")
		for _, n := range r.Nodes {
			meta := "current"
			if !n.MetaCurrent {
				meta = "not current"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d of %d reachable\n", n.Name, dash(n.Cluster), dash(strings.Join(n.Routes, ",")), dash(n.MetaLeader), meta, n.Reachable, n.MetaPeers)
		}
		fmt.Fprintf(tw, "JetStream meta leader: %s\n", leader)
	case r.External != "":
		fmt.Fprintf(tw, "NATS: external (%s); its nodes are its own to show\n", r.External)
	}
	fmt.Fprintln(tw)

	fmt.Fprintf(tw, "STREAM\tMESSAGES\tLAST\tREPLICAS\n")
	for _, s := range r.Streams {
		if s.Error != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t%s\n", s.Name, s.Error)
			continue
		}
		var peers []string
		for _, p := range s.Peers {
			peers = append(peers, p.Name+" "+p.State)
		}
		if len(peers) == 0 {
			peers = []string{fmt.Sprintf("%d, no cluster", s.Replicas)}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", s.Name, s.Messages, s.LastSeq, strings.Join(peers, ", "))
	}
	if r.StreamsError != "" {
		fmt.Fprintln(tw, r.StreamsError)
	}
	fmt.Fprintln(tw)
	r.renderReplication(tw)

	fmt.Fprintf(tw, "HOST\tSTATE\tHEARTBEAT\tSKEW\tCONFIG\n")
	for _, h := range r.Hosts {
		state := h.State
		switch {
		case h.State == "not answering":
			state = "not answering (" + h.Error + ")"
		case h.State == "down" && h.DownReason != "":
			state = "down (" + h.DownReason + ")"
		}
		beat := "never heard"
		if h.HeartbeatAgeSeconds != nil {
			beat = ageText(*h.HeartbeatAgeSeconds) + " ago"
		}
		skew := "-"
		if h.SkewMillis != nil {
			skew = fmt.Sprintf("%+dms", *h.SkewMillis)
		}
		config := "-"
		if h.ConfigHash != "" {
			config = h.ConfigHash[:min(12, len(h.ConfigHash))]
		} else if h.info != nil || h.heard != nil {
			config = "(no file)"
		}
		if len(h.ConfigDiffers) > 0 {
			config += ", differs from " + strings.Join(h.ConfigDiffers, ", ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", h.Host, state, beat, skew, config)
	}
	fmt.Fprintln(tw)

	if withInfo {
		fmt.Fprintf(tw, "HOST\tVERSION\tUPTIME\tSERVICES\tDATA\tFREE\n")
		for _, h := range r.Hosts {
			if h.Info == nil {
				fmt.Fprintf(tw, "%s\tnot answering (%s)\n", h.Host, dash(h.Error))
				continue
			}
			i := h.Info
			services := strings.Join(i.Services, ",")
			if len(i.Services) == len(events.Services) {
				services = "all"
			}
			free := humanBytes(int64(min(i.DataFreeBytes, 1<<62)))
			if i.DataFreeError != "" {
				free = "? (" + i.DataFreeError + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.Host, i.Version, ageText(i.UptimeSeconds), services, i.DataDir, free)
		}
		fmt.Fprintln(tw)
	}

	if len(r.Instances) > 0 {
		fmt.Fprintf(tw, "INSTANCE\tACTIVE\tEPOCH\n")
		for _, il := range r.Instances {
			epoch := "-"
			if il.Epoch > 0 {
				epoch = fmt.Sprint(il.Epoch)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", il.Instance, dash(il.Holder), epoch)
		}
		fmt.Fprintln(tw)
	}

	// Hosts known to be down (HostDown applied) get no column.
	shown := map[string]bool{}
	fmt.Fprintf(tw, "SERVICE\tLEADER\tEPOCH")
	for _, h := range r.Hosts {
		if h.State != "down" {
			shown[h.Host] = true
			fmt.Fprintf(tw, "\tAPPLIED@%s", h.Host)
		}
	}
	fmt.Fprintf(tw, "\tOUTBOX\tDEAD-LETTERED\tPENDING\n")
	for _, s := range r.Services {
		leader, epoch := "-", "-"
		if s.Leader != nil {
			leader, epoch = dash(s.Leader.Host), fmt.Sprint(s.Leader.Epoch)
			for _, host := range slices.Sorted(maps.Keys(s.Disagree)) {
				leader += fmt.Sprintf(" (%s sees %s)", host, s.Disagree[host])
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s", s.Service, leader, epoch)
		var outbox, dead int64
		var pending uint64
		for _, o := range s.Hosts {
			switch {
			case !shown[o.Host]:
			case o.Status != nil:
				fmt.Fprintf(tw, "\t%d", o.Status.Applied)
				outbox += o.Status.OutboxPending
				dead += o.Status.DeadLettered
				for _, cs := range o.Status.Consumers {
					pending += cs.Pending
				}
			case !o.Running:
				fmt.Fprintf(tw, "\t-")
			default:
				fmt.Fprintf(tw, "\t?")
			}
		}
		fmt.Fprintf(tw, "\t%d\t%d\t%d\n", outbox, dead, pending)
	}
	if len(r.Problems) > 0 {
		fmt.Fprintln(tw)
		for _, p := range r.Problems {
			fmt.Fprintf(tw, "problem: %s\n", p)
		}
	}
}

// ageText is seconds as a short duration: 850ms, 12s, 3m4s, 2h5m.
func ageText(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
}

// judgeReplication marks each stream with fewer healthy (current)
// replicas than configured, saying why and what to do, and gathers the
// advice once per cause in r.Advice: a host whose replicas are offline
// (dead for good: remove it and start a replacement; coming back: wait),
// streams short of replicas after a removal (a new node takes them), a
// host catching up (wait).
func (r *statusReport) judgeReplication() {
	offline := map[string]int{} // host → streams where its replica is offline
	behind := map[string]int{}  // host → streams where its replica catches up
	var short []string          // streams with fewer replicas than configured
	most := 0                   // the most replicas one of them wants
	nodes := 0                  // the JetStream meta group's size
	for _, n := range r.Nodes {
		nodes = max(nodes, n.MetaPeers)
	}
	for i := range r.Streams {
		s := &r.Streams[i]
		if s.Error != "" || s.Replicas < 2 || len(s.Peers) == 0 {
			continue
		}
		healthy := 0
		var why, advice []string
		for _, p := range s.Peers {
			switch {
			case p.Leader || p.Current && !p.Offline:
				healthy++
			case p.Offline:
				offline[p.Name]++
				why = append(why, p.Name+" offline")
				advice = append(advice, fmt.Sprintf("if %s is dead for good, `lifeboat cluster remove %s` and start a replacement host; if it is coming back, wait", p.Name, p.Name))
			default:
				behind[p.Name]++
				why = append(why, p.Name+" "+p.State)
				advice = append(advice, "wait: "+p.Name+" is catching up")
			}
		}
		if len(s.Peers) < s.Replicas {
			short = append(short, s.Name)
			most = max(most, s.Replicas)
			why = append([]string{fmt.Sprintf("%d of %d replicas", len(s.Peers), s.Replicas)}, why...)
			advice = append(advice, shortAdvice(nodes, s.Replicas, true))
		}
		if healthy >= s.Replicas {
			continue
		}
		s.Healthy = &healthy
		s.Replication = strings.Join(why, "; ")
		s.Advice = strings.Join(advice, "; ")
	}
	for _, h := range slices.Sorted(maps.Keys(offline)) {
		r.Advice = append(r.Advice, fmt.Sprintf("%s's replicas are offline in %d stream(s): if %s is dead for good, run `lifeboat cluster remove %s`, then start a replacement host (README, \"Replacing a host\"); if it is coming back, wait: its replicas catch up once it runs", h, offline[h], h, h))
	}
	if len(short) > 0 {
		r.Advice = append(r.Advice, fmt.Sprintf("%d stream(s) have fewer replicas than configured (%s): %s", len(short), strings.Join(short, ", "), shortAdvice(nodes, most, false)))
	}
	for _, h := range slices.Sorted(maps.Keys(behind)) {
		r.Advice = append(r.Advice, fmt.Sprintf("%s is catching up in %d stream(s): wait; status shows its replicas current when it is done", h, behind[h]))
	}
}

// shortAdvice is what to do about streams short of replicas: wait while
// the JetStream meta group has nodes enough to place them, else start a
// replacement host (said briefly for one stream).
func shortAdvice(nodes, replicas int, brief bool) string {
	if nodes >= replicas {
		return "wait: the JetStream meta leader places the missing replicas on the cluster's other nodes"
	}
	if brief {
		return "start a replacement host: the missing replicas are placed on it"
	}
	return "start a replacement host (`lifeboat up --host NEW --cluster-listen ADDR:PORT --peers <the other hosts' cluster addresses>,ADDR:PORT`, a fresh data directory, the same lifeboat.yaml): the JetStream meta leader places the missing replicas on it"
}

// renderReplication writes the streams with fewer healthy replicas than
// configured and what to do.
func (r *statusReport) renderReplication(tw *tabwriter.Writer) {
	if !slices.ContainsFunc(r.Streams, func(s statusStream) bool { return s.Healthy != nil }) {
		return
	}
	fmt.Fprintf(tw, "UNDER-REPLICATED\tHEALTHY\tWHY\n")
	for _, s := range r.Streams {
		if s.Healthy != nil {
			fmt.Fprintf(tw, "%s\t%d of %d\t%s\n", s.Name, *s.Healthy, s.Replicas, s.Replication)
		}
	}
	for _, a := range r.Advice {
		fmt.Fprintf(tw, "what to do: %s\n", a)
	}
	fmt.Fprintln(tw)
}
