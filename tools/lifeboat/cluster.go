package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/client"
)

func newClusterCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "cluster",
		Short: "Change the cluster's membership: remove a dead host's node",
		Long: `The hosts' embedded NATS nodes form one cluster whose streams and buckets
keep three replicas. A host that died for good leaves its replicas offline
until its node is removed: 'lifeboat cluster remove HOST' does that, and a
replacement host started afterwards takes the missing replicas.`,
	}
	c.AddCommand(newClusterRemoveCmd())
	return c
}

// clusterRemoveReport is what `lifeboat cluster remove` shows, and prints
// with --json.
type clusterRemoveReport struct {
	Peer  string `json:"peer"`
	Force bool   `json:"force,omitempty"`
	// SignsOfLife are what makes the host look alive, as the hosts that
	// answer see it (the asked host adds its node's view in
	// Result.Overrode).
	SignsOfLife []string `json:"signs_of_life,omitempty"`
	// Refused says the host looked alive (to the hosts that answer, or to
	// the asked host's node), so nothing was removed.
	Refused bool `json:"refused,omitempty"`
	// Asked is the live host whose process removed the node.
	Asked  string           `json:"asked,omitempty"`
	Result *removePeerReply `json:"result,omitempty"`
	// Next is what to do next, one step each.
	Next []string `json:"next,omitempty"`
	// Error says why nothing (or not everything) was removed.
	Error string `json:"error,omitempty"`
}

func newClusterRemoveCmd() *cobra.Command {
	var cf clientFlags
	var force bool
	c := &cobra.Command{
		Use:   "remove HOST",
		Short: "Remove a dead host's NATS node, so the streams regain full replication on another node",
		Long: `Remove the NATS node of a host that died and will not come back: a live
host's process takes it out of the JetStream meta group and out of every
stream's and bucket's replicas. Each replica it held is re-placed on a node
that holds none of that stream's, when there is one; otherwise the stream
keeps fewer replicas until a new host joins (start a replacement host:
'lifeboat up --host NEW --cluster-listen ... --peers ...'), which then takes
them.

A host that looks alive is refused: its lifeboat process answers, it
heartbeated within three heartbeat intervals, another node has a route to
its node, or the JetStream meta leader heard from its node lately. A live
node that is removed disables its own JetStream. --force removes it anyway
(a host being decommissioned). With an external NATS cluster (--nats) the
cluster's administrators remove a node: 'nats server raft peer-remove'.`,
		Example: `  lifeboat cluster remove cold
  lifeboat cluster remove cold --nats nats://hot:4222 --nats-nkey /etc/lifeboat/secrets/operator.nk
  lifeboat cluster remove cold --json`,
		Args: exactArgs(1, "HOST"),
		RunE: func(c *cobra.Command, args []string) error {
			host := args[0]
			if host == "" || strings.ContainsAny(host, ".*> \t") {
				return usagef(c, "%q is not a host name (letters, digits, - and _; the name its `lifeboat up --host` had)", host)
			}
			nc, js, err := cf.connect()
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx := c.Context()
			rep := clusterRemoveReport{Peer: host, Force: force}
			err = clusterRemove(ctx, &rep, gatherStatus(ctx, nc, js, cf.timeout, false), force, func(asked string, req removePeerRequest, reply *removePeerReply) error {
				// The removal waits on the meta group and every stream.
				rctx, cancel := context.WithTimeout(ctx, max(cf.timeout, removePeerBudget+5*time.Second))
				defer cancel()
				return client.CallHost(rctx, nc, api.HostService, asked, removePeerEndpoint, req, reply)
			})
			if err != nil {
				rep.Error = err.Error()
			}
			if cf.json {
				if perr := printJSON(c.OutOrStdout(), rep); perr != nil {
					return perr
				}
			} else {
				rep.render(c.OutOrStdout())
			}
			return err
		},
	}
	cf.add(c)
	c.Flags().BoolVar(&force, "force", false, "remove the host's node even though it looks alive (its JetStream is then disabled)")
	return c
}

// clusterRemove decides from what status gathered whether rep.Peer may
// be removed and which host to ask, asks it (through ask), and fills rep.
func clusterRemove(ctx context.Context, rep *clusterRemoveReport, st *statusReport, force bool, ask func(asked string, req removePeerRequest, reply *removePeerReply) error) error {
	host := rep.Peer
	rep.SignsOfLife = signsOfLife(st, host)
	if len(rep.SignsOfLife) > 0 && !force {
		rep.Refused = true
		return fmt.Errorf("refusing to remove %s: it looks alive: %s. Removing a live node disables its JetStream; if %s is dead for good, stop what still runs there first, or pass --force", host, strings.Join(rep.SignsOfLife, "; "), host)
	}
	asked, err := removerFor(st, host)
	if err != nil {
		return err
	}
	rep.Asked = asked
	var reply removePeerReply
	if err := ask(asked, removePeerRequest{Peer: host, Force: force}, &reply); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if client.Code(err) == api.CodeConflict && strings.HasPrefix(err.Error(), "refusing") {
			// Its node sees signs of life the hosts did not.
			rep.Refused = true
			return fmt.Errorf("%s: %w", asked, err)
		}
		return fmt.Errorf("%s could not remove %s: %w", asked, host, err)
	}
	rep.Result = &reply
	rep.Next = removeNextSteps(reply)
	for _, s := range reply.Streams {
		if s.Result == resultStillListed {
			return fmt.Errorf("%d stream(s) still list %s: run the command again", countResult(reply.Streams, resultStillListed), host)
		}
	}
	return nil
}

// signsOfLife are the signs, as the hosts that answer see them, that
// host is alive: its process answers, it heartbeated within three of its
// intervals, or another host's node has a route to its node.
func signsOfLife(st *statusReport, host string) []string {
	var out []string
	interval := 5 * time.Second // lifeboat's default
	for _, h := range st.Hosts {
		if h.info != nil && h.info.HeartbeatInterval > 0 {
			interval = h.info.HeartbeatInterval.Duration()
			break
		}
	}
	for _, h := range st.Hosts {
		if h.Host != host {
			continue
		}
		if h.heard != nil && h.heard.Interval > 0 {
			interval = h.heard.Interval.Duration()
		}
		if h.info != nil {
			out = append(out, "its lifeboat process answers (lifeboat.api.host."+host+".info)")
		}
		if age := h.HeartbeatAgeSeconds; age != nil && *age < 3*interval.Seconds() {
			out = append(out, fmt.Sprintf("it heartbeated %s ago (every %s)", ageText(*age), interval))
		}
	}
	for _, n := range st.Nodes {
		if n.Name != host && slices.Contains(n.Routes, host) {
			out = append(out, fmt.Sprintf("node %s has a route to its node", n.Name))
		}
	}
	return out
}

// removerFor picks the live host whose process removes host's node: the
// JetStream meta leader's host when it answers, else the first that
// answers with an embedded node.
func removerFor(st *statusReport, host string) (string, error) {
	var live []string
	external := ""
	for _, h := range st.Hosts {
		switch {
		case h.Host == host || h.info == nil:
		case h.info.Node == nil:
			external = h.info.External
		default:
			live = append(live, h.Host)
		}
	}
	switch {
	case len(live) == 0 && external != "":
		return "", fmt.Errorf("the hosts use an external NATS cluster (%s): its administrators remove a dead node, with `nats server raft peer-remove %s` and `nats stream cluster peer-remove STREAM %s` for each stream that lists it", external, host, host)
	case len(live) == 0:
		return "", errors.New("no other host's lifeboat process answers: a live host removes the node (`lifeboat status` shows the hosts; a majority of them must run)")
	case slices.Contains(live, st.MetaLeader):
		return st.MetaLeader, nil
	}
	return live[0], nil
}

// removeNextSteps says what to do once the node is removed.
func removeNextSteps(r removePeerReply) []string {
	var out []string
	others := strings.Join(slices.DeleteFunc(slices.Clone(r.MetaPeers), func(p string) bool { return p == r.Peer }), ", ")
	if others == "" {
		others = "the other hosts"
	}
	start := fmt.Sprintf("start a replacement host: on a new machine, with a fresh data directory and the same lifeboat.yaml, `lifeboat up --host NEW --cluster-listen ADDR:PORT --peers <the cluster addresses of %s>,ADDR:PORT`", others)
	switch short := countResult(r.Streams, resultShort); {
	case short > 0:
		out = append(out, fmt.Sprintf("%d stream(s) keep fewer replicas than configured until a new node joins: %s; the JetStream meta leader places the missing replicas on it (`lifeboat status` shows them current)", short, start))
	case len(r.Streams) > 0:
		out = append(out, "every stream has its replicas again; `lifeboat status` shows them current once they caught up. To have a spare node again, "+start)
	default:
		out = append(out, "no stream listed "+r.Peer+"; to have a third node again, "+start)
	}
	if n := countResult(r.Streams, resultStillListed); n > 0 {
		out = append(out, fmt.Sprintf("%d stream(s) still list %s: run `lifeboat cluster remove %s` again", n, r.Peer, r.Peer))
	}
	out = append(out,
		fmt.Sprintf("drop %s from the other hosts' --peers (nats.cluster.peers) when they next restart", r.Peer),
		fmt.Sprintf("never start %s again from its old data directory: its node would come back believing it holds replicas; wipe the directory (or use a new one) if the machine returns", r.Peer),
		fmt.Sprintf("a replacement may reuse the name %s (with a fresh data directory), but NATS keeps a removed node's name out of the cluster for 5 minutes: it is ready only then", r.Peer))
	return out
}

func countResult(streams []streamRemoval, result string) int {
	n := 0
	for _, s := range streams {
		if s.Result == result {
			n++
		}
	}
	return n
}

// render writes the report as text.
func (r *clusterRemoveReport) render(w io.Writer) {
	if r.Result == nil {
		if len(r.SignsOfLife) > 0 && !r.Force {
			fmt.Fprintf(w, "%s looks alive:\n", r.Peer)
			for _, s := range r.SignsOfLife {
				fmt.Fprintf(w, "  - %s\n", s)
			}
		}
		return
	}
	res := r.Result
	meta := "removed from the JetStream meta group"
	if res.Meta != "removed" {
		meta = "was no longer in the JetStream meta group"
	}
	fmt.Fprintf(w, "%s's node %s (by %s", r.Peer, meta, res.By)
	if len(res.MetaPeers) > 0 {
		fmt.Fprintf(w, "; its nodes now: %s", strings.Join(res.MetaPeers, ", "))
	}
	fmt.Fprintln(w, ")")
	for _, s := range append(slices.Clone(r.SignsOfLife), res.Overrode...) {
		fmt.Fprintf(w, "  despite (--force): %s\n", s)
	}
	if len(res.Streams) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "STREAM\tREPLICAS\tNODES\tRESULT\n")
		for _, s := range res.Streams {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", s.Stream, s.Replicas, dash(strings.Join(s.Peers, ",")), removalText(s))
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "next:")
	for _, n := range r.Next {
		fmt.Fprintf(w, "  - %s\n", n)
	}
}

// removalText says a stream's result in words.
func removalText(s streamRemoval) string {
	var out string
	switch s.Result {
	case resultReplaced:
		out = "re-placed on " + strings.Join(s.Added, ", ")
		if len(s.Peers) < s.Replicas {
			out += fmt.Sprintf(" (%d of %d until a new node joins)", len(s.Peers), s.Replicas)
		}
	case resultShort:
		out = fmt.Sprintf("%d of %d replicas until a new node joins", len(s.Peers), s.Replicas)
	case resultRemoved:
		out = "removed"
	default:
		out = s.Result
	}
	if s.Error != "" {
		out += " (" + s.Error + ")"
	}
	return out
}
