package bus

import (
	"context"
	"fmt"

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

// EnsureStreams creates the streams or brings them to the configured shape.
func (b *Bus) EnsureStreams(ctx context.Context) error {
	for _, cfg := range StreamConfigs(b.opts) {
		if _, err := b.JS.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("bus: stream %s (replicas %d): %w", cfg.Name, cfg.Replicas, err)
		}
	}
	return nil
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
