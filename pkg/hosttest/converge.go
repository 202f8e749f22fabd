package hosttest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/client"
)

// Converged waits until every running host has applied every event its
// services consume (each service's own events consumer has nothing pending
// or unacknowledged) and, service by service, every host stands at the
// same stream position with the same digest of its replicated state
// (DESIGN §1 "Replicas must not diverge"). It returns each service's
// digest. The harness calls it when a multi-host test ends; a test calls
// it wherever it needs the hosts to agree.
func (c *Cluster) Converged(timeout time.Duration) map[string]api.Digest {
	c.t.Helper()
	got, err := c.convergedWithin(timeout)
	if err != nil {
		c.t.Fatalf("hosttest: %v", err)
	}
	return got
}

func (c *Cluster) convergedWithin(timeout time.Duration) (map[string]api.Digest, error) {
	deadline := time.Now().Add(timeout)
	for {
		got, err := c.converged()
		if err == nil {
			return got, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the hosts did not converge within %s: %w", timeout, err)
		}
		time.Sleep(200 * time.Millisecond) // polling a condition, with the deadline above
	}
}

// converged checks convergence once.
func (c *Cluster) converged() (map[string]api.Digest, error) {
	running := c.Running()
	if len(running) == 0 {
		return nil, errors.New("no host runs")
	}
	nc, err := running[0].dial()
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out := map[string]api.Digest{}
	for _, svc := range events.Services {
		var first *api.Digest
		for _, h := range running {
			var st api.ServiceStatus
			err := client.CallHost(ctx, nc, svc, h.Name, api.Status, nil, &st)
			if errors.Is(err, nats.ErrNoResponders) {
				continue // this host does not run svc (--target)
			}
			if err != nil {
				return nil, err
			}
			for _, cs := range st.Consumers {
				if strings.HasSuffix(cs.Durable, "_events") && (cs.Pending > 0 || cs.AckPending > 0) {
					return nil, fmt.Errorf("%s on %s: %d events pending, %d unacknowledged", svc, h.Name, cs.Pending, cs.AckPending)
				}
			}
			var d api.Digest
			if err := client.CallHost(ctx, nc, svc, h.Name, api.DigestEndpoint, nil, &d); err != nil {
				return nil, err
			}
			if first == nil {
				first = &d
				continue
			}
			if d.Applied != first.Applied {
				return nil, fmt.Errorf("%s: %s applied up to %d, %s up to %d", svc, h.Name, d.Applied, first.Host, first.Applied)
			}
			if d.SHA256 != first.SHA256 {
				return nil, fmt.Errorf("%s: the replicated state of %s and %s differ at stream position %d: %s", svc, h.Name, first.Host, d.Applied, differing(*first, d))
			}
		}
		if first != nil {
			out[svc] = *first
		}
	}
	return out, nil
}

// differing names the tables whose digests differ.
func differing(a, b api.Digest) string {
	var diff []string
	for _, ta := range a.Tables {
		i := slices.IndexFunc(b.Tables, func(tb api.TableDigest) bool { return tb.Name == ta.Name })
		if i < 0 || b.Tables[i].SHA256 != ta.SHA256 {
			rows := -1
			if i >= 0 {
				rows = b.Tables[i].Rows
			}
			diff = append(diff, fmt.Sprintf("table %s (%d rows on %s, %d on %s)", ta.Name, ta.Rows, a.Host, rows, b.Host))
		}
	}
	return strings.Join(diff, ", ")
}
