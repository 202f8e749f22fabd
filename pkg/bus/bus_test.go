package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/testtool"
)

func TestStreamsAreProvisioned(t *testing.T) {
	_, b := bustest.Embedded(t)
	ctx := context.Background()
	want := map[string]struct {
		subject   string
		retention jetstream.RetentionPolicy
	}{
		events.StreamEvents:   {"lifeboat.event.>", jetstream.LimitsPolicy},
		events.StreamCommands: {"lifeboat.cmd.>", jetstream.WorkQueuePolicy},
		events.StreamDLQ:      {"lifeboat.dlq.>", jetstream.LimitsPolicy},
	}
	for name, w := range want {
		s, err := b.JS.Stream(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		info, _ := s.Info(ctx)
		c := info.Config
		if c.Subjects[0] != w.subject || c.Retention != w.retention || c.Storage != jetstream.FileStorage || c.Duplicates != 2*time.Minute || c.Replicas != 1 {
			t.Errorf("%s: %+v", name, c)
		}
	}
	// Idempotent: a second process provisions the same streams.
	if err := b.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestEmbeddedPortInUseSaysWhichAndHow(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	opts := bus.NewOptions()
	opts.Listen = l.Addr().String()
	opts.DataDir = t.TempDir()
	_, err = bus.StartEmbedded(opts)
	if err == nil || !strings.Contains(err.Error(), l.Addr().String()) || !strings.Contains(err.Error(), "--nats-listen") {
		t.Fatalf("error %v, want the address and how to change it", err)
	}
}

func TestUnreachableClusterRetriesThenSaysSo(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close() // nothing listens here now
	opts := bus.NewOptions()
	opts.URLs = []string{"nats://" + addr}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := bus.Connect(ctx, opts)
	if err == nil || !strings.Contains(err.Error(), "cannot reach NATS") || !strings.Contains(err.Error(), "--nats") {
		t.Fatalf("error %v, want a clear 'cannot reach' naming --nats", err)
	}
	if time.Since(start) < time.Second {
		t.Fatalf("gave up after %s: it should retry until the context ends", time.Since(start))
	}
}

func TestClusterComesUpLate(t *testing.T) {
	// Connect retries with backoff until the server appears.
	addr := testtool.FreeAddr(t)
	opts := bus.NewOptions()
	opts.URLs = []string{"nats://" + addr}
	var logs testtool.LockedBuffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	var b *bus.Bus
	go func() {
		var err error
		b, err = bus.Connect(ctx, opts)
		done <- err
	}()
	// The server starts only once an attempt has failed: a Connect that
	// did not retry would then never succeed.
	testtool.WaitFor(t, 10*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("Connect returned %v before the server was up, want it to keep retrying", err)
		default:
		}
		if !strings.Contains(logs.String(), "cannot reach NATS; retrying") {
			return fmt.Errorf("no failed attempt logged yet: %q", logs.String())
		}
		return nil
	})
	sopts := bus.NewOptions()
	sopts.Listen = addr
	sopts.DataDir = t.TempDir()
	ns, err := bus.StartEmbedded(sopts)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	if err := <-done; err != nil {
		t.Fatalf("connect after the server came up: %v", err)
	}
	b.Close()
}

func TestSubscriberAcksAndRedeliversNaked(t *testing.T) {
	_, b := bustest.Embedded(t)
	pub := bus.NewPublisher(b.JS)
	cfg := bus.NewConsumerConfig("sync")
	cfg.Backoff = []time.Duration{10 * time.Millisecond}
	sub := bus.NewSubscriber(b.JS, cfg, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := sub.Subscribe(ctx, bus.Consumer{Durable: "sync_h1_events", Filters: []string{"lifeboat.event.host.>"}})
	if err != nil {
		t.Fatal(err)
	}
	env, err := bus.NewEnvelope(ctx, "test", &events.HostDown{Host: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, env); err != nil {
		t.Fatal(err)
	}
	// The same id again is dropped by JetStream's duplicate window.
	if err := pub.Publish(ctx, env); err != nil {
		t.Fatal(err)
	}
	next := func() *bus.Delivery {
		select {
		case d := <-ch:
			return d
		case <-time.After(5 * time.Second):
			t.Fatal("no message")
			return nil
		}
	}
	d := next()
	if d.ID != env.ID || d.Subject != env.Subject || d.Delivered != 1 || d.StreamSeq != 1 || string(d.Body) != string(env.Body) {
		t.Fatalf("delivery %+v", d.Message)
	}
	d.Nak()
	d = next()
	if d.ID != env.ID || d.Delivered != 2 {
		t.Fatalf("redelivery %+v, want the same message, delivery 2", d.Message)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
	// A sentinel published after the duplicate comes next: had the
	// duplicate been stored, it would come first.
	sentinel, err := bus.NewEnvelope(ctx, "test", &events.HostUp{Host: "sentinel"})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, sentinel); err != nil {
		t.Fatal(err)
	}
	if d := next(); d.ID != sentinel.ID || d.StreamSeq != 2 {
		t.Fatalf("got %s (stream seq %d), want the sentinel at seq 2: the duplicate was not dropped", d.ID, d.StreamSeq)
	}
	cancel()
	sub.Close()
	for range ch {
	}
}
