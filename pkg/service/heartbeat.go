package service

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
)

// Heartbeat publishes a HostHeartbeat for this process on
// lifeboat.heartbeat.<host> (core NATS, no stream) at once and then every
// interval until ctx ends. volume-monitor turns silence into HostDown.
func Heartbeat(ctx context.Context, nc *nats.Conn, hb events.HostHeartbeat, interval time.Duration, logger *slog.Logger) {
	source := "lifeboat/" + hb.Host
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		hb.SentAt = time.Now().UTC()
		env, err := bus.NewEnvelope(ctx, source, &hb)
		if err == nil {
			err = nc.PublishMsg(&nats.Msg{Subject: env.Subject, Header: nats.Header(env.Header), Data: env.Body})
		}
		if err != nil && ctx.Err() == nil {
			logger.Warn("heartbeat not sent", slog.String("error", err.Error()))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
