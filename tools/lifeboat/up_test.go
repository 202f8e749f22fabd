package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/testtool"
)

// startUp runs `lifeboat up` in this process and returns its NATS URL.
func startUp(t *testing.T, extra ...string) (natsURL string, logs *testtool.LockedBuffer) {
	t.Helper()
	listen := testtool.FreeAddr(t)
	args := append([]string{"up", "--data", t.TempDir(), "--nats-listen", listen, "--http", testtool.FreeAddr(t), "--host", "test-host"}, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	logs = &testtool.LockedBuffer{}
	done := make(chan error, 1)
	go func() {
		root := newRootCmd()
		root.SetArgs(args)
		root.SetOut(logs)
		root.SetErr(logs)
		done <- root.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("lifeboat up stopped with %v\n%s", err, logs)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("lifeboat up did not stop in 30s\n%s", logs)
		}
	})
	return "nats://" + listen, logs
}

// TestUpStartsSixServices: `lifeboat up` from a clean data dir brings up all
// six micro services, each answering status, and the three streams.
func TestUpStartsSixServices(t *testing.T) {
	url, logs := startUp(t)
	var nc *nats.Conn
	testtool.WaitFor(t, 30*time.Second, func() (err error) {
		nc, err = nats.Connect(url)
		return err
	})
	defer nc.Close()
	testtool.WaitFor(t, 30*time.Second, func() error {
		// What `nats micro ls` does: ping every service.
		inbox := nats.NewInbox()
		sub, err := nc.SubscribeSync(inbox)
		if err != nil {
			return err
		}
		defer sub.Unsubscribe()
		if err := nc.PublishRequest("$SRV.PING", inbox, nil); err != nil {
			return err
		}
		found := map[string]bool{}
		for {
			m, err := sub.NextMsg(300 * time.Millisecond)
			if err != nil {
				break
			}
			var p micro.Ping
			if json.Unmarshal(m.Data, &p) == nil {
				found[p.Name] = true
			}
		}
		for _, s := range events.Services {
			if !found["lifeboat-"+s] {
				return fmt.Errorf("lifeboat-%s not found among %v\n%s", s, found, logs)
			}
		}
		return nil
	})
	for _, s := range events.Services {
		var st api.ServiceStatus
		if err := call(t.Context(), nc, 5*time.Second, s, api.Status, nil, &st); err != nil || st.Service != s || st.Host != "test-host" {
			t.Fatalf("%s status %+v (%v)", s, st, err)
		}
	}
	// Every service serves the endpoints the contract names, and no other.
	for _, s := range events.Services {
		m, err := nc.Request("$SRV.INFO.lifeboat-"+s, nil, 5*time.Second)
		if err != nil {
			t.Fatalf("%s info: %v", s, err)
		}
		var info micro.Info
		if err := json.Unmarshal(m.Data, &info); err != nil {
			t.Fatalf("%s info %s: %v", s, m.Data, err)
		}
		var got, want []string
		for _, ep := range info.Endpoints {
			got = append(got, ep.Subject)
		}
		for _, ep := range append([]string{api.Status}, api.Endpoints[s]...) {
			want = append(want, events.APISubject(s, ep))
		}
		for _, ep := range append(slices.Clone(api.HostEndpoints), api.ServiceHostEndpoints[s]...) {
			want = append(want, events.HostAPISubject(s, "test-host", ep))
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s serves %v, the contract (events/api) names %v", s, got, want)
		}
	}
	// The operator's view of the same.
	var out bytes.Buffer
	if code := run([]string{"status", "--nats", url}, &out, &out); code != 0 {
		t.Fatalf("lifeboat status exited %d:\n%s", code, out.String())
	}
	for _, s := range events.Services {
		if !strings.Contains(out.String(), s) {
			t.Errorf("lifeboat status lacks %s:\n%s", s, out.String())
		}
	}
}

func TestUpRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown key", "host: h1\nnats:\n  replicas: 1\n  listn: x\n", "lifeboat.yaml:4: nats.listn: unknown key"},
		{"bad value", "host: h1\nlog:\n  level: loud\n", `lifeboat.yaml:3: log.level: "loud" is not one of debug, info, warn, error`},
		{"bad target", "targets: [sync, backups]\n", `lifeboat.yaml:1: targets: "backups" is not a service`},
		{"bad type", "heartbeat_interval: often\n", `lifeboat.yaml:1: heartbeat_interval: "often" is not a duration`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "lifeboat.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			code := run([]string{"up", "--config", path, "--data", t.TempDir()}, &out, &out)
			if code == 0 || !strings.Contains(out.String(), tc.want) {
				t.Fatalf("exit %d, output:\n%s\nwant it to contain %q", code, out.String(), tc.want)
			}
		})
	}
}

func TestBadArgumentsExitWithUsage(t *testing.T) {
	for _, args := range [][]string{
		{"up", "--target", "nope"},
		{"up", "--no-such-flag"},
		{"up", "extra"},
		{"events", "publish", "HostDown"},
		{"events", "publish", "NoSuchType", "{}"},
		{"events", "publish", "HostDown", "not json"},
		{"events", "publish", "HostDown", `{"host": 3}`},
		{"events", "tail", "--type", "Nope"},
	} {
		var out bytes.Buffer
		code := run(args, &out, &out)
		if code != 2 || !strings.Contains(out.String(), "Usage:") {
			t.Errorf("lifeboat %s: exit %d, want 2 with usage; output:\n%s", strings.Join(args, " "), code, out.String())
		}
	}
}

func TestUpReportsPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var out bytes.Buffer
	code := run([]string{"up", "--data", t.TempDir(), "--nats-listen", l.Addr().String(), "--http", testtool.FreeAddr(t)}, &out, &out)
	if code == 0 || !strings.Contains(out.String(), l.Addr().String()) || !strings.Contains(out.String(), "--nats-listen") {
		t.Fatalf("exit %d, output:\n%s\nwant the port and how to change it", code, out.String())
	}
	out.Reset()
	code = run([]string{"up", "--data", t.TempDir(), "--nats-listen", testtool.FreeAddr(t), "--http", l.Addr().String()}, &out, &out)
	if code == 0 || !strings.Contains(out.String(), l.Addr().String()) || !strings.Contains(out.String(), "--http") {
		t.Fatalf("exit %d, output:\n%s\nwant the port and how to change it", code, out.String())
	}
}

func TestEventsPublishTailAndDLQ(t *testing.T) {
	url, _ := startUp(t)
	testtool.WaitFor(t, 30*time.Second, func() error {
		var out bytes.Buffer
		if run([]string{"status", "--nats", url}, &out, &out) != 0 {
			return fmt.Errorf("%s", out.String())
		}
		return nil
	})
	var out bytes.Buffer
	if code := run([]string{"events", "publish", "HostDown", `{"host":"h1"}`, "--nats", url, "--json"}, &out, &out); code != 0 {
		t.Fatalf("publish exited %d: %s", code, out.String())
	}
	var pub struct {
		ID, Subject string
		Seq         uint64
	}
	if err := json.Unmarshal(out.Bytes(), &pub); err != nil || pub.Subject != "lifeboat.event.host.down" || pub.ID == "" {
		t.Fatalf("publish printed %q (%v)", out.String(), err)
	}
	out.Reset()
	if code := run([]string{"events", "tail", "--all", "--count", "1", "--type", "HostDown", "--nats", url, "--json"}, &out, &out); code != 0 {
		t.Fatalf("tail exited %d: %s", code, out.String())
	}
	if !strings.Contains(out.String(), pub.ID) || !strings.Contains(out.String(), `"host":"h1"`) {
		t.Fatalf("tail printed %q, want the event %s", out.String(), pub.ID)
	}
	// A raw, broken message from an outside client lands in the DLQ.
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish("lifeboat.event.host.down", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	testtool.WaitFor(t, 15*time.Second, func() error {
		out.Reset()
		if code := run([]string{"events", "dlq", "--nats", url, "--json"}, &out, &out); code != 0 {
			return fmt.Errorf("dlq exited %d: %s", code, out.String())
		}
		var letters []shownMessage
		if err := json.Unmarshal(out.Bytes(), &letters); err != nil {
			return err
		}
		if len(letters) == 0 {
			return fmt.Errorf("no dead letters yet")
		}
		for _, l := range letters {
			if l.RawBody != "not json" || !strings.Contains(l.Reason, "not JSON") || l.From != "lifeboat.event.host.down" {
				return fmt.Errorf("dead letter %+v", l)
			}
		}
		return nil
	})
}
