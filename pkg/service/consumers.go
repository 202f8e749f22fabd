package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
)

// A service reads through at most three durable consumers (DESIGN §1
// "State and decisions across hosts"):
//
//   - events: <service>_<host>_events, this host's own, over every event
//     type the service subscribes to, so that every host applies every
//     event, in stream order across types, to its own database;
//   - addressed commands: <service>_<host>_cmd, the commands addressed to
//     this host (lifeboat.cmd.<service>.<host>.<verb>), for host-bound
//     work;
//   - cluster-wide commands: <service>_cmd, shared by every host (the
//     commands stream is a work queue: each command is delivered once).
type consumer struct {
	bus.Consumer
	// handlers by catalog subject (an addressed command's is the
	// unaddressed one).
	handlers map[string]Handler
	// wildcard handles what a subscription to a subject filter with
	// wildcards (lifeboat.event.host.>) receives.
	wildcard Handler
	// events: the consumer's position is recorded with every batch.
	events bool
	// leader: the cluster-wide commands, which a service with a leader
	// consumes only while it leads.
	leader bool
}

// handler returns the handler of catalog subject.
func (c *consumer) handler(subject string) (Handler, bool) {
	if h, ok := c.handlers[subject]; ok {
		return h, true
	}
	return c.wildcard, c.wildcard != nil
}

// consumers plans the service's consumers from its subscriptions.
func (rt *Runtime) consumers() ([]*consumer, error) {
	name, host := rt.Spec.Name, rt.Deps.Host
	evs := &consumer{Consumer: bus.Consumer{Durable: bus.DurableName(name, host, "events"), Stream: events.StreamEvents}, handlers: map[string]Handler{}, events: true}
	addressed := &consumer{Consumer: bus.Consumer{Durable: bus.DurableName(name, host, "cmd"), Stream: events.StreamCommands}, handlers: map[string]Handler{}}
	shared := &consumer{Consumer: bus.Consumer{Durable: bus.DurableName(name, "cmd"), Stream: events.StreamCommands}, handlers: map[string]Handler{}, leader: true}
	for _, s := range rt.Spec.Subscriptions {
		t, ok := events.BySubject(s.Subject)
		if !ok && strings.HasPrefix(s.Subject, "lifeboat.event.") && strings.ContainsAny(s.Subject, "*>") && !s.addressed {
			// Every event under a filter, known types or not: unknown
			// ones are dead-lettered.
			if evs.wildcard != nil {
				return nil, fmt.Errorf("two wildcard subscriptions (%s)", s.Subject)
			}
			evs.wildcard = s.handle
			evs.Filters = append(evs.Filters, s.Subject)
			continue
		}
		if !ok {
			return nil, fmt.Errorf("subscription to %q: not a subject of the events catalog", s.Subject)
		}
		c, filter := evs, s.Subject
		switch {
		case t.Kind == events.Command && s.addressed:
			var err error
			if filter, err = events.HostCommandSubject(t, host); err != nil {
				return nil, err
			}
			c = addressed
		case t.Kind == events.Command:
			c = shared
		case s.addressed:
			return nil, fmt.Errorf("subscription to %s: only a command can be addressed to a host", s.Subject)
		}
		if _, dup := c.handlers[t.Subject]; dup {
			return nil, fmt.Errorf("two subscriptions to %s", s.Subject)
		}
		c.handlers[t.Subject] = s.handle
		c.Filters = append(c.Filters, filter)
	}
	var out []*consumer
	for _, c := range []*consumer{evs, addressed, shared} {
		if len(c.Filters) > 0 {
			slices.Sort(c.Filters)
			out = append(out, c)
		}
	}
	return out, nil
}

// position decides where this host's events consumer reads from, so that
// the database never runs on a stale view and applies the stream in order
// (DESIGN §1): the database records the last event it applied (A); the
// consumer is created anew at A+1 while the stream still holds A+1; when
// it no longer does, the state is rebuilt from a peer's snapshot first,
// and the consumer starts after the snapshot's position.
func (rt *Runtime) position(ctx context.Context, c *consumer) error {
	js := rt.Deps.Bus.JS
	applied, err := rt.DB.Applied(ctx, c.Stream)
	if err != nil {
		return err
	}
	var first, last uint64
	if err := retry(ctx, rt.Logger, "stream "+c.Stream, func(ctx context.Context) error {
		s, err := js.Stream(ctx, c.Stream)
		if err != nil {
			return err
		}
		first, last = s.CachedInfo().State.FirstSeq, s.CachedInfo().State.LastSeq
		return nil
	}); err != nil {
		return err
	}
	held := applied+1 >= first // the stream holds everything after A
	var ackFloor uint64
	exists := false
	if err := retry(ctx, rt.Logger, "consumer "+c.Durable, func(ctx context.Context) error {
		cons, err := js.Consumer(ctx, c.Stream, c.Durable)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		exists, ackFloor = true, cons.CachedInfo().AckFloor.Stream
		return nil
	}); err != nil {
		return err
	}
	// An existing consumer is always replaced by one that starts right
	// after what the database applied: the database is the record, and a
	// consumer resumed as it was would hand out the messages its last run
	// received but did not apply only after their ack wait, behind newer
	// ones, so this host would apply events out of stream order (and a
	// decision's compare-and-set would then judge a different state than
	// on the other hosts). The inbox skips what is applied twice.
	if exists {
		if ackFloor > applied && held {
			rt.Logger.Warn("the database is behind this host's consumer (restored or replaced): replaying from where it stands",
				slog.String("consumer", c.Durable), slog.Uint64("applied", applied), slog.Uint64("consumer_at", ackFloor))
		}
		if err := retry(ctx, rt.Logger, "delete consumer "+c.Durable, func(ctx context.Context) error {
			err := js.DeleteConsumer(ctx, c.Stream, c.Durable)
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				return nil
			}
			return err
		}); err != nil {
			return err
		}
	}
	if !held {
		seq, err := rt.rebuild(ctx, first, last)
		if err != nil {
			return err
		}
		applied = seq
	}
	c.StartSeq = applied + 1
	return nil
}

// retry runs op while a cluster elects leaders, as bus does for its own
// provisioning.
func retry(ctx context.Context, log *slog.Logger, what string, op func(ctx context.Context) error) error {
	return bus.RetryForming(ctx, log, func() string { return "a majority of the cluster's nodes must run" }, what, op)
}

// dropLegacy deletes the consumers an earlier build named
// <service>_<subject>, one per command type: the commands stream is a work
// queue, which refuses two consumers with the same filter, so they would
// keep this build's from being created.
func (rt *Runtime) dropLegacy(ctx context.Context) {
	for _, s := range rt.Spec.Subscriptions {
		if !strings.HasPrefix(s.Subject, "lifeboat.cmd.") {
			continue
		}
		durable := bus.DurableName(rt.Spec.Name, s.Subject)
		err := rt.Deps.Bus.JS.DeleteConsumer(ctx, events.StreamCommands, durable)
		if err == nil {
			rt.Logger.Info("deleted the consumer of an earlier build", slog.String("consumer", durable))
		}
	}
}
