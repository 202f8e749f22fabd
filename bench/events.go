package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/pkg/testtool"
)

const headerSent = "Bench-Sent"

// benchEvents measures one service consuming events with per-event
// durability (each batch committed with an fsync before its acks), against
// the raw JetStream publish rate of the same embedded server.
func benchEvents(n int) (*Report, error) {
	r := newReport("events")
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "lifeboat-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	opts := bus.NewOptions()
	opts.Listen = "127.0.0.1:-1"
	opts.DataDir = dir
	b, err := bus.Connect(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer b.Close()

	// Peer: raw async publish, 256-byte messages, R1 file store.
	if _, err := b.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH_RAW", Subjects: []string{"bench.raw"}, Storage: jetstream.FileStorage}); err != nil {
		return nil, err
	}
	payload := make([]byte, 256)
	raw, err := timed(func() error {
		return publishAsync(b.JS, n, func(int) *nats.Msg { return &nats.Msg{Subject: "bench.raw", Data: payload} })
	})
	if err != nil {
		return nil, err
	}
	rawRate := float64(n) / raw.Seconds()
	r.Results["raw_jetstream_async_publish_msgs_per_s"] = round(rawRate)
	// The bar is against the faster of the two raw peers.
	natsRate, err := natsBenchPeer(r, b.NC.ConnectedUrl(), n)
	if err != nil {
		return nil, err
	}
	rawRate = max(rawRate, natsRate)

	// The backlog: n HostDown events, then the service drains them.
	body := func(i int) []byte { return []byte(fmt.Sprintf(`{"host":"host-%06d","reason":"bench"}`, i)) }
	if err := publishAsync(b.JS, n, func(i int) *nats.Msg {
		env := bus.NewRawEnvelope(ctx, "bench", "io.lifeboat.host.down.v1", "lifeboat.event.host.down", body(i))
		return &nats.Msg{Subject: env.Subject, Header: nats.Header(env.Header), Data: env.Body}
	}); err != nil {
		return nil, err
	}
	var committed atomic.Int64
	var latMu sync.Mutex
	var lat []time.Duration
	measuring := atomic.Bool{}
	allDone := make(chan struct{})
	var once sync.Once
	deps := service.Deps{Bus: b, Host: "bench", DataDir: dir, Version: "0.0.0",
		AfterCommit: func(_ string, batch []*bus.Delivery) {
			if committed.Add(int64(len(batch))) >= int64(n) {
				once.Do(func() { close(allDone) })
			}
			if measuring.Load() {
				now := time.Now()
				latMu.Lock()
				for _, d := range batch {
					if ns, err := strconv.ParseInt(d.HeaderValue(headerSent), 10, 64); err == nil {
						lat = append(lat, now.Sub(time.Unix(0, ns)))
					}
				}
				latMu.Unlock()
			}
		}}
	spec := service.Spec{
		Name:       events.ServiceJobTracker,
		Migrations: fstest.MapFS{"0001.sql": {Data: []byte(`CREATE TABLE hosts (host TEXT PRIMARY KEY, reason TEXT NOT NULL, n INTEGER NOT NULL)`)}},
		Subscriptions: []service.Subscription{service.On(func(ctx context.Context, tx *store.Tx, ev *events.HostDown, _ service.Delivery) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO hosts (host, reason, n) VALUES (?, ?, 1) ON CONFLICT (host) DO UPDATE SET n = n + 1`, ev.Host, ev.Reason)
			return err
		})},
	}
	sctx, stop := context.WithCancel(ctx)
	rt, err := service.New(sctx, spec, deps)
	if err != nil {
		stop()
		return nil, err
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- rt.Run(sctx) }()
	select {
	case <-allDone:
	case err := <-done:
		stop()
		return nil, fmt.Errorf("service stopped: %v", err)
	case <-time.After(10 * time.Minute):
		stop()
		return nil, fmt.Errorf("backlog of %d not drained in 10 minutes (%d done)", n, committed.Load())
	}
	drain := time.Since(start)
	consumeRate := float64(n) / drain.Seconds()
	r.Results["consume_commit_ack_events_per_s"] = round(consumeRate)
	r.Results["consume_backlog_events"] = n
	r.Results["consume_vs_raw_publish"] = round2(consumeRate / rawRate) // the faster raw peer

	// Latency under a steady load, publish to commit.
	measuring.Store(true)
	const rate, seconds = 5000, 4
	tick := time.NewTicker(10 * time.Millisecond)
	sent := 0
	for i := 0; sent < rate*seconds; i++ {
		<-tick.C
		for j := 0; j < rate/100; j++ {
			env := bus.NewRawEnvelope(ctx, "bench", "io.lifeboat.host.down.v1", "lifeboat.event.host.down", body(n+sent))
			env.Header[headerSent] = []string{strconv.FormatInt(time.Now().UnixNano(), 10)}
			if _, err := b.JS.PublishMsgAsync(&nats.Msg{Subject: env.Subject, Header: nats.Header(env.Header), Data: env.Body}, jetstream.WithMsgID(env.ID)); err != nil {
				stop()
				return nil, err
			}
			sent++
		}
	}
	tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		latMu.Lock()
		got := len(lat)
		latMu.Unlock()
		if got >= sent || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	<-done
	latMu.Lock()
	slices.Sort(lat)
	p50, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
	latMu.Unlock()
	r.Results["latency_load_events_per_s"] = rate
	r.Results["latency_p50_ms"] = ms(p50)
	r.Results["latency_p99_ms"] = ms(p99)
	r.Targets["consume at least a quarter of raw publish"] = "consume_vs_raw_publish >= 0.25"
	r.Verdicts["consume at least a quarter of raw publish"] = consumeRate >= rawRate/4
	r.Targets["p99 under 20 ms"] = "latency_p99_ms < 20"
	r.Verdicts["p99 under 20 ms"] = p99 < 20*time.Millisecond
	r.Targets["20k events/s consume-to-state"] = "consume_commit_ack_events_per_s >= 20000"
	r.Verdicts["20k events/s consume-to-state"] = consumeRate >= 20000
	return r, nil
}

// publishAsync publishes n messages asynchronously and waits for every ack.
func publishAsync(js jetstream.JetStream, n int, msg func(i int) *nats.Msg) error {
	for i := 0; i < n; i++ {
		m := msg(i)
		var opts []jetstream.PublishOpt
		if id := m.Header.Get(bus.HeaderMsgID); id != "" {
			opts = append(opts, jetstream.WithMsgID(id))
		}
		if _, err := js.PublishMsgAsync(m, opts...); err != nil {
			return err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("async publish of %d not acked in 5 minutes", n)
	}
}

// benchStartup times `lifeboat up` from exec to all six services answering
// (what `nats micro ls` sees), three times from a clean data dir.
func benchStartup(r *Report, bin string) error {
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%s: %w (run make build)", bin, err)
	}
	var runs []time.Duration
	for range 3 {
		d, err := startupOnce(bin)
		if err != nil {
			return err
		}
		runs = append(runs, d)
	}
	slices.Sort(runs)
	r.Results["startup_to_six_services_ms"] = ms(runs[1])
	r.Targets["start-up under 3 s"] = "startup_to_six_services_ms < 3000"
	r.Verdicts["start-up under 3 s"] = runs[1] < 3*time.Second
	return nil
}

func startupOnce(bin string) (time.Duration, error) {
	dir, err := os.MkdirTemp("", "lifeboat-bench-up-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	listen, err := testtool.PickAddr()
	if err != nil {
		return 0, err
	}
	httpAddr, err := testtool.PickAddr()
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(bin, "up", "--data", dir, "--nats-listen", listen, "--http", httpAddr, "--log-level", "warn")
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	for time.Since(start) < 60*time.Second {
		if n := countServices("nats://" + listen); n == len(events.Services) {
			return time.Since(start), nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0, fmt.Errorf("six services not up in 60s")
}

func countServices(url string) int {
	nc, err := nats.Connect(url, nats.Timeout(100*time.Millisecond))
	if err != nil {
		return 0
	}
	defer nc.Close()
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return 0
	}
	if err := nc.PublishRequest("$SRV.PING", inbox, nil); err != nil {
		return 0
	}
	found := map[string]bool{}
	for {
		m, err := sub.NextMsg(50 * time.Millisecond)
		if err != nil {
			return len(found)
		}
		var p micro.Ping
		if json.Unmarshal(m.Data, &p) == nil {
			found[p.Name] = true
		}
	}
}

func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

func ms(d time.Duration) float64 { return round2(float64(d.Microseconds()) / 1000) }
func round(f float64) float64    { return float64(int64(f + 0.5)) }
func round2(f float64) float64   { return float64(int64(f*100+0.5)) / 100 }

// natsBenchPeer measures the same embedded server with `nats bench js pub
// async` (256-byte messages, R1 file store), the peer DESIGN §5 names, when
// the nats CLI is there: $LIFEBOAT_NATS (which `make bench` builds into the
// tools cache) or nats in $PATH. Without it the nats.go figure stands alone
// and the report says why.
func natsBenchPeer(r *Report, url string, n int) (float64, error) {
	rate, err := natsBenchJSPub(url, n, "bench.natscli", "BENCH_NATSCLI", 1, false)
	switch {
	case err != nil:
		return 0, err
	case rate == 0:
		r.Results["nats_bench_js_pub_async_msgs_per_s"] = "not measured: no nats CLI (make bench builds it)"
	default:
		r.Results["nats_bench_js_pub_async_msgs_per_s"] = rate
	}
	return rate, nil
}

// natsBenchJSPub runs `nats bench js pub async` against url: n 256-byte
// messages on subject into stream (created, file storage, with replicas),
// each with a Nats-Msg-Id when dedup is set. It returns the aggregate
// rate, or 0 without an error when there is no nats CLI ($LIFEBOAT_NATS or
// nats in $PATH).
func natsBenchJSPub(url string, n int, subject, stream string, replicas int, dedup bool) (float64, error) {
	cli := os.Getenv("LIFEBOAT_NATS")
	if cli == "" {
		cli, _ = exec.LookPath("nats")
	}
	if cli == "" {
		return 0, nil
	}
	args := []string{"-s", url, "bench", "js", "pub", "async", subject,
		"--msgs", strconv.Itoa(n), "--size", "256", "--stream", stream, "--create", "--storage", "file",
		"--replicas", strconv.Itoa(replicas), "--no-progress"}
	if dedup {
		args = append(args, "--dedup")
	}
	out, err := exec.Command(cli, args...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("nats bench: %w\n%s", err, out)
	}
	m := natsBenchRate.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("nats bench printed no rate:\n%s", out)
	}
	rate, err := strconv.ParseFloat(strings.ReplaceAll(string(m[1]), ",", ""), 64)
	if err != nil {
		return 0, fmt.Errorf("nats bench rate %q: %w", m[1], err)
	}
	return rate, nil
}

// natsBenchRate finds the aggregate rate in nats bench's summary line
// ("... stats: 49,734 msgs/sec ~ 12 MiB/sec ...").
var natsBenchRate = regexp.MustCompile(`stats: ([0-9,]+) msgs/sec`)
