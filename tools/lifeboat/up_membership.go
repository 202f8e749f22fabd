package main

// The host-scoped endpoint remove-peer, lifeboat.api.host.<host>.remove-peer:
// `lifeboat cluster remove HOST` asks a live host's process to take a dead
// host's NATS node out of the JetStream meta group and out of every stream's
// replicas, through its own embedded node (DESIGN §1 "Hosts and the
// cluster").

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/auth"
	"lifeboat.dev/pkg/bus"
)

// removePeerEndpoint is the host-scoped endpoint that removes a dead
// host's node: it takes removePeerRequest and answers removePeerReply.
const removePeerEndpoint = "remove-peer"

// removePeerBudget bounds one removal: the meta group's change, each
// stream's, and the wait until no stream lists the peer.
const removePeerBudget = 25 * time.Second

// aliveWithin is how recently the JetStream meta leader must have heard
// from a node for it to count as alive: the leader hears from every
// follower about once a second.
const aliveWithin = 3 * time.Second

// The results of a stream's removal (streamRemoval.Result).
const (
	// resultReplaced: the peer is gone and another node holds the replica.
	resultReplaced = "re-placed"
	// resultShort: the peer is gone and no node was free to take its
	// replica: the stream has fewer replicas until a new node joins.
	resultShort = "fewer replicas"
	// resultRemoved: the peer is gone and the stream has as many replicas
	// as configured (it had one to spare).
	resultRemoved = "removed"
	// resultStillListed: the stream still lists the peer when the budget
	// ran out.
	resultStillListed = "still listed"
)

// removePeerRequest asks a live host's process to remove a dead host's
// node.
type removePeerRequest struct {
	// Peer is the dead host's name: its node's server name.
	Peer string `json:"peer"`
	// Force removes it even when the node looks alive (a live node that
	// is removed disables its own JetStream).
	Force bool `json:"force,omitempty"`
}

// removePeerReply says what the removal did.
type removePeerReply struct {
	Peer string `json:"peer"`
	// By is the host whose node carried the removal out.
	By string `json:"by"`
	// Meta is what happened in the JetStream meta group: "removed", or
	// "not a member" when the peer had already left it.
	Meta string `json:"meta"`
	// MetaPeers are the meta group's nodes afterwards, as its leader
	// knows them.
	MetaPeers []string `json:"meta_peers,omitempty"`
	// Overrode are the signs of life Force overrode.
	Overrode []string `json:"overrode,omitempty"`
	// Streams are the streams (buckets' included) that listed the peer.
	Streams []streamRemoval `json:"streams"`
}

// streamRemoval is one stream after the removal.
type streamRemoval struct {
	Stream string `json:"stream"`
	// Replicas is the stream's configured replica count.
	Replicas int `json:"replicas"`
	// Peers are the nodes that hold (or are placed to hold) its replicas
	// now.
	Peers []string `json:"peers"`
	// Added are the nodes its replicas were re-placed on.
	Added []string `json:"added,omitempty"`
	// Result is resultReplaced, resultShort, resultRemoved or
	// resultStillListed.
	Result string `json:"result"`
	// Error is what the stream's peer removal answered, when it failed.
	Error string `json:"error,omitempty"`
}

// removePeer serves removePeerEndpoint.
func (hv *hostView) removePeer(req micro.Request) {
	ctx, cancel := context.WithTimeout(context.Background(), removePeerBudget)
	defer cancel()
	var r removePeerRequest
	if err := json.Unmarshal(req.Data(), &r); err != nil || r.Peer == "" {
		_ = req.Error(api.CodeBadRequest, `remove-peer takes {"peer": HOST}`, nil)
		return
	}
	if r.Peer == hv.cfg.Host {
		_ = req.Error(api.CodeBadRequest, fmt.Sprintf("%s cannot remove its own node: ask another host", hv.cfg.Host), nil)
		return
	}
	a := hv.audit(req)
	if err := hv.publishAudit(ctx, a); err != nil {
		// No trail, no change: an operator retries.
		_ = req.Error("503", "the audit record of this request could not be published: "+err.Error(), nil)
		return
	}
	if !a.Accepted {
		_ = req.Error("403", a.Reason, nil)
		return
	}
	reply, code, err := hv.removePeerNode(ctx, r)
	if err != nil {
		slog.Warn("remove-peer refused or failed", slog.String("peer", r.Peer), slog.String("error", err.Error()))
		_ = req.Error(code, err.Error(), nil)
		return
	}
	slog.Info("removed a dead host's node from the JetStream cluster", slog.String("peer", r.Peer),
		slog.String("meta", reply.Meta), slog.Int("streams", len(reply.Streams)), slog.Any("overrode", reply.Overrode))
	_ = req.RespondJSON(reply)
}

// audit judges who asked (auth.Judge): with --auth, only what an
// operator key of cluster.json signed is carried out, as the services'
// operator endpoints do.
func (hv *hostView) audit(req micro.Request) events.CommandAudited {
	hdr := req.Headers()
	a := events.CommandAudited{Subject: req.Subject(), ID: hdr.Get(auth.HeaderRequestID), Service: api.HostService, Host: hv.cfg.Host, ReceivedAt: time.Now().UTC()}
	var keys *auth.Cluster
	if hv.cfg.NATS.Auth != "" {
		var err error
		if keys, err = auth.Load(hv.cfg.NATS.Auth); err != nil {
			a.Reason = "this host cannot read its cluster.json: " + err.Error()
			return a
		}
	}
	v := auth.Judge(keys, a.Subject, a.ID, hdr.Get, req.Data())
	a.Key, a.SignedAt, a.Operator, a.Accepted, a.Reason = v.Key, v.SignedAt, v.Operator, v.Accepted, v.Reason
	return a
}

// publishAudit records the request as a CommandAudited event.
//
// A host is removed right after it died, when the events stream may be
// electing a new leader (4.5–7.5 s here when its leader's node dies): the
// publish is retried, the same envelope (JetStream drops a duplicate),
// for up to auditPatience. CI saw a removal refused for want of it.
func (hv *hostView) publishAudit(ctx context.Context, a events.CommandAudited) error {
	env, err := bus.NewEnvelope(ctx, "lifeboat/"+hv.cfg.Host, &a)
	if err != nil {
		return err
	}
	pub := bus.NewPublisher(hv.b.JS)
	deadline := time.Now().Add(auditPatience)
	for {
		err := pub.Publish(ctx, env)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// auditPatience is how long a removal waits for its audit record to be
// stored: past a stream leader's election.
const auditPatience = 12 * time.Second

// removePeerNode removes peer's node from the meta group and from every
// stream that lists it, unless it looks alive and r.Force is not set. The
// error carries its micro error code.
func (hv *hostView) removePeerNode(ctx context.Context, r removePeerRequest) (removePeerReply, string, error) {
	b := hv.b
	reply := removePeerReply{Peer: r.Peer, By: hv.cfg.Host, Streams: []streamRemoval{}}
	node, ok := b.Node()
	if !ok {
		return reply, api.CodeConflict, fmt.Errorf("%s uses an external NATS cluster (%s): its administrators remove a dead node there, with `nats server raft peer-remove %s` and `nats stream cluster peer-remove STREAM %s` per stream", hv.cfg.Host, b.NC.ConnectedUrlRedacted(), r.Peer, r.Peer)
	}
	sys, err := b.System(ctx)
	if err != nil {
		return reply, api.CodeInternal, err
	}
	defer sys.Close()

	meta, metaErr := metaView(ctx, sys)
	signs := nodeSignsOfLife(node, meta, r.Peer)
	if len(signs) > 0 {
		if !r.Force {
			return reply, api.CodeConflict, fmt.Errorf("refusing to remove %s: it looks alive: %s. Removing a live node disables its JetStream; stop it first, or pass --force if it is being decommissioned", r.Peer, strings.Join(signs, "; "))
		}
		reply.Overrode = signs
	}

	// Listing is read-only, so it is retried while the streams elect
	// leaders after the peer died (CI saw the first try time out).
	var before map[string]streamPlacement
	for patience := time.Now().Add(auditPatience); ; {
		if before, err = streamPeers(ctx, b.JS); err == nil || ctx.Err() != nil || time.Now().After(patience) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	if err != nil {
		return reply, "503", fmt.Errorf("cannot list the streams: %w (JetStream needs a quorum: a majority of the nodes must run)", err)
	}
	listing := slices.DeleteFunc(slices.Sorted(maps.Keys(before)), func(s string) bool { return !slices.Contains(before[s].peers, r.Peer) })

	// The meta group first: its leader then takes the peer out of every
	// stream itself, re-placing each replica where a node is free.
	reply.Meta = "removed"
	if err := jsAPI(ctx, sys, "$JS.API.SERVER.REMOVE", map[string]string{"peer": r.Peer}); err != nil {
		var ae *jsAPIError
		switch {
		case errors.As(err, &ae) && ae.ErrCode == errServerNotMember:
			reply.Meta = "not a member"
			if len(listing) == 0 {
				peers := "unknown"
				if metaErr == nil {
					peers = strings.Join(meta.peers(), ", ")
				}
				return reply, api.CodeNotFound, fmt.Errorf("%s is no peer of this cluster's JetStream and no stream lists it: nothing to remove (the meta group's peers: %s)", r.Peer, peers)
			}
		case errors.As(err, &ae):
			return reply, api.CodeInternal, fmt.Errorf("the JetStream meta leader refused to remove %s: %s", r.Peer, ae.Description)
		default:
			return reply, "503", fmt.Errorf("removing %s from the JetStream meta group: %w (a majority of the nodes must run for it to have a leader)", r.Peer, err)
		}
	}

	// Then every stream that still lists it (a stream the meta leader has
	// not reached yet, or one it could not change).
	errs := map[string]string{}
	for _, name := range listing {
		err := jsAPI(ctx, b.NC, "$JS.API.STREAM.PEER.REMOVE."+name, map[string]string{"peer": r.Peer})
		var ae *jsAPIError
		if err != nil && !(errors.As(err, &ae) && ae.ErrCode == errPeerNotMember) {
			errs[name] = err.Error()
		}
	}

	// Wait until no stream lists it (the meta leader's changes commit in
	// moments), for at most half of what is left.
	wait := removePeerBudget / 2
	if d, ok := ctx.Deadline(); ok {
		wait = time.Until(d) / 2
	}
	waitCtx, stopWait := context.WithTimeout(ctx, wait)
	defer stopWait()
	var after map[string]streamPlacement
	for {
		cur, err := streamPeers(waitCtx, b.JS)
		if err == nil {
			after = cur
			if !slices.ContainsFunc(listing, func(s string) bool { return slices.Contains(cur[s].peers, r.Peer) }) {
				break
			}
		}
		select {
		case <-time.After(250 * time.Millisecond):
			continue
		case <-waitCtx.Done():
		}
		break
	}
	if after == nil {
		if after, err = streamPeers(ctx, b.JS); err != nil {
			return reply, "503", fmt.Errorf("%s left the meta group (%s), but the streams could not be listed since: %w", r.Peer, reply.Meta, err)
		}
	}
	for _, name := range listing {
		reply.Streams = append(reply.Streams, removalOf(name, r.Peer, before[name], after[name], errs[name]))
	}
	if m, err := metaView(ctx, sys); err == nil {
		reply.MetaPeers = m.peers()
	}
	return reply, "", nil
}

// removalOf says what became of stream name once peer was removed.
func removalOf(name, peer string, before, after streamPlacement, errText string) streamRemoval {
	sr := streamRemoval{Stream: name, Replicas: max(after.replicas, before.replicas), Peers: after.peers, Error: errText}
	if sr.Peers == nil {
		sr.Peers = []string{}
	}
	for _, p := range after.peers {
		if !slices.Contains(before.peers, p) {
			sr.Added = append(sr.Added, p)
		}
	}
	switch {
	case slices.Contains(after.peers, peer):
		sr.Result = resultStillListed
	case len(sr.Added) > 0:
		sr.Result = resultReplaced
	case len(after.peers) < sr.Replicas:
		sr.Result = resultShort
	default:
		sr.Result = resultRemoved
	}
	return sr
}

// streamPlacement is where a stream's replicas are.
type streamPlacement struct {
	replicas int
	// peers are the nodes of its group and of the group it is becoming
	// (Desired), sorted.
	peers []string
}

// streamPeers lists every stream of the account with its nodes.
func streamPeers(ctx context.Context, js jetstream.JetStream) (map[string]streamPlacement, error) {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out := map[string]streamPlacement{}
	l := js.ListStreams(lctx)
	for info := range l.Info() {
		out[info.Config.Name] = streamPlacement{replicas: info.Config.Replicas, peers: placementOf(info.Cluster)}
	}
	return out, l.Err()
}

// placementOf are the nodes a stream's cluster info names: its leader,
// its replicas, and the replicas it is becoming.
func placementOf(ci *jetstream.ClusterInfo) []string {
	var out []string
	add := func(name string) {
		if name != "" && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	if ci == nil {
		return nil
	}
	add(ci.Leader)
	for _, p := range ci.Replicas {
		add(p.Name)
	}
	if ci.Desired != nil {
		for _, p := range ci.Desired.Replicas {
			add(p.Name)
		}
	}
	slices.Sort(out)
	return out
}

// The JetStream API's error codes removePeerNode tells apart.
const (
	errPeerNotMember   = 10040 // a stream's group: peer not a member
	errServerNotMember = 10044 // the meta group: server is not a member of the cluster
)

// jsAPIError is an error the JetStream API answered.
type jsAPIError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *jsAPIError) Error() string { return fmt.Sprintf("%s (%d)", e.Description, e.ErrCode) }

// jsAPI sends a JetStream API request and returns the error it answers.
func jsAPI(ctx context.Context, nc *nats.Conn, subject string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(rctx, subject, data)
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	var resp struct {
		Error *jsAPIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("%s: unreadable answer: %w", subject, err)
	}
	if resp.Error != nil {
		return resp.Error
	}
	return nil
}

// metaGroup is the JetStream meta group as its leader sees it.
type metaGroup struct {
	Leader   string     `json:"leader"`
	Replicas []metaPeer `json:"replicas"`
}

// metaPeer is a follower of the meta group, as its leader sees it.
type metaPeer struct {
	Name    string `json:"name"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline"`
	// Active is how long ago the leader last heard from it; 0 when it
	// has not since it was elected.
	Active time.Duration `json:"active"`
}

// peers are the group's nodes, the leader included, sorted.
func (m metaGroup) peers() []string {
	out := []string{m.Leader}
	for _, r := range m.Replicas {
		out = append(out, r.Name)
	}
	slices.Sort(out)
	return out
}

// metaView asks the JetStream meta leader (through the system account)
// how it sees the meta group: only the leader hears from every node.
func metaView(ctx context.Context, sys *nats.Conn) (metaGroup, error) {
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	msg, err := sys.RequestWithContext(rctx, "$SYS.REQ.SERVER.PING.JSZ", []byte(`{"leader_only":true}`))
	if err != nil {
		return metaGroup{}, fmt.Errorf("the JetStream meta leader did not answer: %w", err)
	}
	var resp struct {
		Data struct {
			Meta *metaGroup `json:"meta_cluster"`
		} `json:"data"`
		Error *jsAPIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return metaGroup{}, err
	}
	if resp.Error != nil {
		return metaGroup{}, resp.Error
	}
	if resp.Data.Meta == nil || resp.Data.Meta.Leader == "" {
		return metaGroup{}, errors.New("the meta leader's answer names no meta group")
	}
	return *resp.Data.Meta, nil
}

// nodeSignsOfLife are the signs, as this node and the meta leader see
// them, that peer's node runs: a route to it, or the meta leader having
// heard from it within aliveWithin (or being it). The meta leader hears
// from each node about once a second.
func nodeSignsOfLife(node bus.Node, meta metaGroup, peer string) []string {
	var out []string
	if slices.Contains(node.Routes, peer) {
		out = append(out, fmt.Sprintf("node %s has a route to its node", node.Name))
	}
	if meta.Leader == peer {
		out = append(out, "its node leads the JetStream meta group")
	}
	for _, r := range meta.Replicas {
		// An Active of 0 is a node the leader has not heard from since it
		// was elected.
		if r.Name == peer && !r.Offline && r.Active > 0 && r.Active < aliveWithin {
			out = append(out, fmt.Sprintf("the JetStream meta leader (%s) heard from its node %s ago", meta.Leader, r.Active.Round(time.Millisecond)))
		}
	}
	return out
}
