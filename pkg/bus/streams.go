package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/events"
)

// StreamConfigs returns the three streams of DESIGN §2 for these options.
func StreamConfigs(opts Options) []jetstream.StreamConfig {
	replicas := max(opts.Replicas, 1)
	return []jetstream.StreamConfig{
		{
			Name:        events.StreamEvents,
			Description: "Lifeboat events: every service's facts, consumed by durable per-service consumers",
			Subjects:    []string{events.SubjectEvents},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
			Duplicates:  opts.DedupeWindow,
			MaxAge:      opts.EventsMaxAge,
		},
		{
			Name:        events.StreamCommands,
			Description: "Lifeboat commands: a work queue, one consumer per service",
			Subjects:    []string{events.SubjectCommands},
			Retention:   jetstream.WorkQueuePolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
			Duplicates:  opts.DedupeWindow,
		},
		{
			Name:        events.StreamDLQ,
			Description: "Lifeboat dead letters, kept for inspection with their reasons (lifeboat events dlq)",
			Subjects:    []string{events.SubjectDLQ},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
			Duplicates:  opts.DedupeWindow,
			MaxAge:      opts.DLQMaxAge,
		},
	}
}

// EnsureStreams creates the streams or brings them to the configured shape
// (so it also raises their replicas once the cluster has grown). It is
// idempotent. A cluster that is forming cannot take them yet — it elects
// its JetStream meta leader first, and a stream cannot have more replicas
// than nodes have joined — so those failures are retried, saying every few
// seconds what is awaited, until ctx ends.
func (b *Bus) EnsureStreams(ctx context.Context) error {
	for _, cfg := range StreamConfigs(b.opts) {
		if err := retryForming(ctx, b.opts.Logger, b.clusterState, fmt.Sprintf("stream %s (replicas %d)", cfg.Name, cfg.Replicas), func(ctx context.Context) error {
			_, err := b.JS.CreateOrUpdateStream(ctx, cfg)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// RetryForming runs op until it succeeds, retrying while the cluster
// forms or a stream elects a leader (see retryForming): for what a service
// provisions itself (its consumers, buckets).
func RetryForming(ctx context.Context, log *slog.Logger, state func() string, what string, op func(ctx context.Context) error) error {
	return retryForming(ctx, log, state, what, op)
}

// retryForming runs op until it succeeds, retrying the failures of a
// cluster that is still forming, or electing a stream's leader after a node
// died, with backoff, and logging what is awaited (state) every few
// seconds.
func retryForming(ctx context.Context, log *slog.Logger, state func() string, what string, op func(ctx context.Context) error) error {
	// A request into a cluster that has just formed can be lost without
	// an answer (the API's interest is still spreading over the routes):
	// the first attempts wait for less, then up to 5 s.
	wait, said, timeout := 100*time.Millisecond, time.Now(), time.Second
	for {
		octx, cancel := context.WithTimeout(ctx, timeout)
		timeout = min(2*timeout, 5*time.Second)
		err := op(octx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("bus: %s: gave up waiting for the JetStream cluster (%s): %w", what, state(), err)
		}
		if !forming(err) {
			return fmt.Errorf("bus: %s: %w", what, err)
		}
		if time.Since(said) >= 3*time.Second {
			said = time.Now()
			log.Warn("waiting for the JetStream cluster: "+state(), slog.String("for", what), slog.String("error", err.Error()))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bus: %s: gave up waiting for the JetStream cluster (%s): %w", what, state(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// forming says whether err is what a cluster that is still forming answers.
func forming(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case 10005, // no suitable peers for placement: fewer nodes than replicas so far
			10008, // JetStream system temporarily unavailable: no meta leader yet
			10009, // JetStream cluster can not handle request: leader changing
			10023, // insufficient resources: fewer nodes than replicas so far
			10059, // stream not found: one just created (a bucket's) not yet known to the node answering
			10039, // JetStream not enabled for account: not yet
			10076: // JetStream not enabled: not yet
			return true
		}
		return false
	}
	return unanswered(err) || errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}

// clusterState says, for a log line, what the embedded node sees of its
// cluster.
func (b *Bus) clusterState() string {
	if b.Server == nil {
		return "an external cluster; check that a majority of its nodes run"
	}
	want := b.opts.Cluster.Nodes()
	if want == 1 {
		return "a single node"
	}
	peers := map[string]bool{}
	if rz, err := b.Server.Routez(nil); err == nil {
		for _, r := range rz.Routes {
			peers[r.RemoteName] = true
		}
	}
	meta := "no JetStream meta leader yet"
	if b.Server.JetStreamIsCurrent() {
		meta = "JetStream meta group current"
	}
	if len(peers) >= want-1 {
		return fmt.Sprintf("%d of %d peers connected, %s", len(peers), want-1, meta)
	}
	why := ""
	if b.routes != nil {
		if p := b.routes.recentProblems(); p != "" {
			why = " (" + p + ")"
		}
	}
	return fmt.Sprintf("%d of %d peers connected%s, %s; every peer must run lifeboat up with --cluster-listen and --peers naming the others", len(peers), want-1, why, meta)
}

// ErrNoQuorum is what a JetStream request or publish met when it went
// unanswered because the cluster, or the stream's replicas, have no
// majority running: a *NoQuorumError is it (errors.Is).
var ErrNoQuorum = errors.New("JetStream has no quorum: a majority of the cluster's nodes must run")

// NoQuorumError is an unanswered JetStream request or publish explained:
// the meta group (Stream empty) or Stream's replicas have no quorum.
type NoQuorumError struct {
	// Stream is the stream without a quorum; empty when the whole
	// cluster has none.
	Stream string
	// Reachable of Replicas are the stream's replicas heard from lately
	// (0 of 0 when the stream did not answer).
	Reachable, Replicas int
	// Err is the request's own error (a timeout, no responders).
	Err error
}

func (e *NoQuorumError) Error() string {
	which := ""
	switch {
	case e.Replicas > 0:
		which = fmt.Sprintf(" (stream %s: %d of its %d replicas reachable, a majority must be)", e.Stream, e.Reachable, e.Replicas)
	case e.Stream != "":
		which = fmt.Sprintf(" (stream %s has no leader to answer)", e.Stream)
	}
	return fmt.Sprintf("%v%s; `lifeboat status` shows which run, and nothing is stored until a majority is back: %v", ErrNoQuorum, which, e.Err)
}

func (e *NoQuorumError) Unwrap() error { return e.Err }

// Is makes a NoQuorumError ErrNoQuorum.
func (e *NoQuorumError) Is(target error) bool { return target == ErrNoQuorum }

// replicaSilence is how long a stream's leader may not have heard from a
// replica before ExplainUnavailable counts it unreachable (Raft
// heartbeats every second).
const replicaSilence = 3 * time.Second

// ExplainUnavailable says why a request or a publish on subject (may be
// empty) went unanswered: when err is a timeout, no responders or no
// response from the stream, it asks JetStream (for up to 2 s, also after
// ctx ended) whether the cluster, or the stream holding subject, has a
// quorum, and returns a *NoQuorumError when not. Any other error, or one
// JetStream can explain otherwise, is returned as it is.
func ExplainUnavailable(ctx context.Context, js jetstream.JetStream, subject string, err error) error {
	if err == nil || !unanswered(err) || errors.Is(err, ErrNoQuorum) {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if _, aerr := js.AccountInfo(ctx); aerr != nil {
		var apiErr *jetstream.APIError
		if unanswered(aerr) || errors.As(aerr, &apiErr) && apiErr.ErrorCode == 10008 {
			return &NoQuorumError{Err: err}
		}
		return err
	}
	if subject == "" {
		return err
	}
	name, serr := js.StreamNameBySubject(ctx, subject)
	if serr != nil {
		return err
	}
	var info *jetstream.StreamInfo
	s, serr := js.Stream(ctx, name)
	if serr == nil {
		info, serr = s.Info(ctx)
	}
	switch {
	case serr != nil && unanswered(serr):
		return &NoQuorumError{Stream: name, Err: err}
	case serr != nil || info.Cluster == nil || len(info.Cluster.Replicas) == 0:
		return err // one replica, or another story
	}
	// A leader that lost its followers still answers for a while: count
	// the replicas it hears from.
	replicas, reachable := len(info.Cluster.Replicas), 0
	if info.Cluster.Leader != "" {
		replicas++
		reachable++
	}
	for _, r := range info.Cluster.Replicas {
		if !r.Offline && r.Active < replicaSilence {
			reachable++
		}
	}
	if info.Cluster.Leader != "" && reachable > replicas/2 {
		return err // a quorum: only slow
	}
	return &NoQuorumError{Stream: name, Reachable: reachable, Replicas: replicas, Err: err}
}

// unanswered says whether err is a request nobody answered in time.
func unanswered(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)
}

// StreamFor names the stream that holds subject.
func StreamFor(subject string) (string, error) {
	switch {
	case hasPrefix(subject, "lifeboat.event."):
		return events.StreamEvents, nil
	case hasPrefix(subject, "lifeboat.cmd."):
		return events.StreamCommands, nil
	case hasPrefix(subject, "lifeboat.dlq."):
		return events.StreamDLQ, nil
	}
	return "", fmt.Errorf("bus: subject %q is on no lifeboat stream (want lifeboat.event.>, lifeboat.cmd.> or lifeboat.dlq.>)", subject)
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }
