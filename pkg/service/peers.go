package service

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/client"
)

// What a service may ask of its peers, the same service's processes on
// the other hosts, without reaching the bus itself.

// ServiceHosts lists the hosts whose process runs this service (this one
// included), as client.Hosts finds them.
func (rt *Runtime) ServiceHosts(ctx context.Context, expect map[string]bool, quiet, most time.Duration) ([]string, error) {
	return client.Hosts(ctx, rt.Deps.Bus.NC, rt.Spec.Name, expect, quiet, most)
}

// CallHost asks this service's process on host a host-scoped question
// (client.CallHost).
func (rt *Runtime) CallHost(ctx context.Context, host, endpoint string, req, reply any) error {
	return client.CallHost(ctx, rt.Deps.Bus.NC, rt.Spec.Name, host, endpoint, req, reply)
}

// RequestHost asks this service's process on host a host-scoped question
// with a raw body and headers (binary payloads, such as sync's chunks),
// at lifeboat.api.<service>.<host>.<endpoint>, and returns the reply as
// it came (a micro error in its headers).
func (rt *Runtime) RequestHost(ctx context.Context, host, endpoint string, header nats.Header, body []byte) (*nats.Msg, error) {
	m := nats.NewMsg(events.HostAPISubject(rt.Spec.Name, host, endpoint))
	for k, v := range header {
		m.Header[k] = v
	}
	m.Data = body
	return rt.Deps.Bus.NC.RequestMsgWithContext(ctx, m)
}

// EventsBacklog is how many events this host's events consumer has not
// yet handed out or had acknowledged: 0 once the service has applied
// everything the stream holds for it.
func (rt *Runtime) EventsBacklog(ctx context.Context) (uint64, error) {
	for _, c := range rt.consumed {
		if !c.events {
			continue
		}
		cons, err := rt.Deps.Bus.JS.Consumer(ctx, events.StreamEvents, c.Durable)
		if err != nil {
			return 0, err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return 0, err
		}
		return info.NumPending + uint64(info.NumAckPending), nil
	}
	return 0, nil
}
