package service

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/client"
)

// What a service may ask of its peers, the same service's processes on
// the other hosts, without reaching the bus itself.

// ServiceHosts lists the hosts whose process runs this service (this one
// included), by asking every micro service of its name to answer a ping.
// It returns once every host in expect has answered and no other answer
// came for quiet, or at the latest after most.
func (rt *Runtime) ServiceHosts(ctx context.Context, expect map[string]bool, quiet, most time.Duration) ([]string, error) {
	nc := rt.Deps.Bus.NC
	inbox := nc.NewRespInbox()
	ch := make(chan *nats.Msg, 64)
	sub, err := nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest("$SRV.PING.lifeboat-"+rt.Spec.Name, inbox, nil); err != nil {
		return nil, err
	}
	deadline := time.NewTimer(most)
	defer deadline.Stop()
	idle := time.NewTimer(most)
	defer idle.Stop()
	seen := map[string]bool{}
	var hosts []string
	for {
		select {
		case <-ctx.Done():
			return hosts, ctx.Err()
		case <-deadline.C:
			return hosts, nil
		case <-idle.C:
			return hosts, nil
		case m := <-ch:
			var ping micro.Ping
			if json.Unmarshal(m.Data, &ping) != nil {
				continue
			}
			if h := ping.Metadata["host"]; h != "" && !seen[h] {
				seen[h] = true
				hosts = append(hosts, h)
			}
			all := len(expect) > 0
			for h := range expect {
				all = all && seen[h]
			}
			wait := quiet
			if all {
				wait = time.Millisecond
			}
			if !idle.Stop() {
				select {
				case <-idle.C:
				default:
				}
			}
			idle.Reset(wait)
		}
	}
}

// CallHost asks this service's process on host a host-scoped question
// (client.CallHost).
func (rt *Runtime) CallHost(ctx context.Context, host, endpoint string, req, reply any) error {
	return client.CallHost(ctx, rt.Deps.Bus.NC, rt.Spec.Name, host, endpoint, req, reply)
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
