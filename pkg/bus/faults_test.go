package bus_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/testtool"
)

// logLine is one line of a JSON slog handler's output.
type logLine map[string]any

func (l logLine) str(key string) string { s, _ := l[key].(string); return s }

// jsonLog is a logger writing JSON lines to a buffer the test reads.
func jsonLog() (*slog.Logger, *testtool.LockedBuffer) {
	var buf testtool.LockedBuffer
	return slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})), &buf
}

// linesOf are the lines of buf whose attribute key is value.
func linesOf(t *testing.T, buf *testtool.LockedBuffer, key, value string) []logLine {
	t.Helper()
	var out []logLine
	sc := bufio.NewScanner(strings.NewReader(buf.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("unreadable log line %q: %v", sc.Text(), err)
		}
		if l.str(key) == value {
			out = append(out, l)
		}
	}
	return out
}

// connectInBackground runs bus.Connect until the test ends (a node whose
// cluster cannot form waits in it); result receives what it returned.
func connectInBackground(t *testing.T, o bus.Options) (cancel func(), result <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	done, returned := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(returned)
		b, err := bus.Connect(ctx, o)
		if err == nil {
			b.Close()
		}
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-returned:
		case <-time.After(30 * time.Second):
			t.Error("bus.Connect did not return within 30 s of its context ending")
		}
	})
	return cancel, done
}

// TestPeerThatDoesNotAnswerOrResolveIsLoggedAndRetried: a node whose peers
// are a closed port, a name that does not resolve, and a name that
// resolves to a closed port waits for them (never fails, never exits),
// and says at warn level, peer by peer, why and what to do; the server
// retries, and each peer's line comes again at most every few seconds
// however often the server tries.
func TestPeerThatDoesNotAnswerOrResolveIsLoggedAndRetried(t *testing.T) {
	ports := testtool.FreePorts(t, 4)
	closed := fmt.Sprintf("127.0.0.1:%d", ports[2])
	named := fmt.Sprintf("localhost:%d", ports[3])
	const unresolved = "nosuchhost.invalid:6222"
	logger, buf := jsonLog()
	o := bus.NewOptions()
	o.Listen = fmt.Sprintf("127.0.0.1:%d", ports[0])
	o.DataDir = t.TempDir()
	o.ServerName = "h1"
	o.Logger = logger
	self := fmt.Sprintf("127.0.0.1:%d", ports[1])
	o.Cluster = bus.ClusterOptions{Listen: self, Peers: []string{self, closed, unresolved, named}}
	o.Replicas = 3
	cancel, result := connectInBackground(t, o)

	want := map[string][]string{
		closed:     {"connection refused", "--cluster-listen " + closed},
		unresolved: {"does not resolve", "--peers"},
		named:      {"connection refused", "--cluster-listen " + named},
	}
	testtool.WaitFor(t, 10*time.Second, func() error {
		for peer, words := range want {
			lines := linesOf(t, buf, "peer", peer)
			if len(lines) == 0 {
				return fmt.Errorf("no line names peer %s:\n%s", peer, buf)
			}
			l := lines[0]
			text := l.str("msg") + " " + l.str("fix")
			if l.str("level") != "WARN" || !strings.Contains(l.str("msg"), peer) {
				return fmt.Errorf("peer %s: %v; want a warning naming it", peer, l)
			}
			for _, w := range words {
				if !strings.Contains(text, w) {
					return fmt.Errorf("peer %s: %q lacks %q", peer, text, w)
				}
			}
		}
		return nil
	})
	// Retried: a later attempt is logged again, not before a few seconds
	// have passed since the first line (the server tried meanwhile).
	testtool.WaitFor(t, 15*time.Second, func() error {
		for peer := range want {
			lines := linesOf(t, buf, "peer", peer)
			if len(lines) < 2 {
				return fmt.Errorf("peer %s: %d lines, want a second one for a later attempt", peer, len(lines))
			}
			first, _ := time.Parse(time.RFC3339Nano, lines[0].str("time"))
			second, _ := time.Parse(time.RFC3339Nano, lines[1].str("time"))
			if gap := second.Sub(first); gap < 4*time.Second {
				t.Fatalf("peer %s logged twice within %s: a flood\n%s", peer, gap, buf)
			}
			if a, _ := lines[1]["attempt"].(float64); a < 2 {
				t.Fatalf("peer %s: second line at attempt %v, want a later attempt", peer, lines[1]["attempt"])
			}
		}
		return nil
	})
	if raw := linesOf(t, buf, "level", "ERROR"); len(raw) > 0 {
		t.Errorf("errors logged for peers that are only down: %v", raw)
	}
	// Given up by its caller, Connect says which peers failed and why.
	cancel()
	err := <-result
	for _, w := range []string{"0 of 3 peers connected", closed + ": nothing listens", unresolved + ": its host name does not resolve"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Connect: %v; want it to say %q", err, w)
		}
	}
}

// TestClusterNameMismatchIsLoggedWithBothNamesAndRetried: two nodes named
// into different clusters log an error naming both names, the peer and
// the flag to fix, and keep retrying rather than give up.
func TestClusterNameMismatchIsLoggedWithBothNamesAndRetried(t *testing.T) {
	ports := testtool.FreePorts(t, 4)
	routes := []string{fmt.Sprintf("127.0.0.1:%d", ports[2]), fmt.Sprintf("127.0.0.1:%d", ports[3])}
	dir := t.TempDir()
	node := func(i int, cluster string) (bus.Options, *testtool.LockedBuffer) {
		logger, buf := jsonLog()
		o := bus.NewOptions()
		o.Listen = fmt.Sprintf("127.0.0.1:%d", ports[i])
		o.DataDir = filepath.Join(dir, fmt.Sprintf("h%d", i+1))
		o.ServerName = fmt.Sprintf("h%d", i+1)
		o.Logger = logger
		o.Cluster = bus.ClusterOptions{Name: cluster, Listen: routes[i], Peers: routes}
		o.Replicas = 2
		return o, buf
	}
	oa, bufA := node(0, "site-a")
	_, resultA := connectInBackground(t, oa)
	ob, bufB := node(1, "site-b")
	cancelB, resultB := connectInBackground(t, ob)

	for _, tc := range []struct {
		buf                *testtool.LockedBuffer
		peer, ours, theirs string
	}{{bufA, routes[1], "site-a", "site-b"}, {bufB, routes[0], "site-b", "site-a"}} {
		testtool.WaitFor(t, 10*time.Second, func() error {
			lines := linesOf(t, tc.buf, "peer_cluster", tc.theirs)
			if len(lines) == 0 {
				return fmt.Errorf("no line names the peer's cluster %q:\n%s", tc.theirs, tc.buf)
			}
			l := lines[0]
			msg := l.str("msg")
			for _, w := range []string{`"` + tc.ours + `"`, `"` + tc.theirs + `"`, tc.peer, "--cluster-name", "nats.cluster.name"} {
				if !strings.Contains(msg, w) {
					return fmt.Errorf("%q lacks %q", msg, w)
				}
			}
			if l.str("level") != "ERROR" || l.str("cluster") != tc.ours || l.str("peer") != tc.peer {
				return fmt.Errorf("line %v: want an error with cluster %s and peer %s", l, tc.ours, tc.peer)
			}
			return nil
		})
	}
	if strings.Contains(bufA.String(), "Rejecting connection") {
		t.Errorf("the server's own lines were logged too:\n%s", bufA)
	}
	// Neither gave up: each keeps retrying the route (whether the first
	// forms the cluster once the other is restarted with the right name
	// is not asserted: in one process it did so in only some runs, see
	// the closing note).
	select {
	case err := <-resultA:
		t.Fatalf("the first node gave up: %v\n%s", err, bufA)
	case err := <-resultB:
		t.Fatalf("the second node gave up: %v\n%s", err, bufB)
	default:
	}
	cancelB()
	<-resultB
}

// TestNoQuorumIsExplained: on the survivor of a three-node cluster whose
// two other nodes stopped, a publish goes unanswered and
// ExplainUnavailable says there is no quorum, naming what must run; with
// a quorum, an error is left as it is.
func TestNoQuorumIsExplained(t *testing.T) {
	opts := clusterOptions(t, 3)
	buses := connectAll(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	subject := events.SubjectOf[events.HostDown]()
	other := errors.New("some other failure")
	if err := bus.ExplainUnavailable(ctx, buses[0].JS, subject, other); err != other {
		t.Errorf("an error that is not a timeout became %v", err)
	}
	if _, err := buses[0].JS.Publish(ctx, subject, []byte(`{"host":"before"}`)); err != nil {
		t.Fatal(err)
	}
	// With a quorum, a timeout is only slow: left as it is.
	if err := bus.ExplainUnavailable(ctx, buses[0].JS, subject, context.DeadlineExceeded); err != context.DeadlineExceeded {
		t.Errorf("with a quorum, a timeout became %v", err)
	}
	buses[1].Close()
	buses[2].Close()
	start := time.Now()
	pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
	_, err := buses[0].JS.Publish(pctx, subject, []byte(`{"host":"during"}`))
	pcancel()
	if err == nil {
		t.Fatal("a publish without a quorum succeeded")
	}
	explained := bus.ExplainUnavailable(pctx, buses[0].JS, subject, err)
	if took := time.Since(start); took > 6*time.Second {
		t.Errorf("publish and explanation took %s", took)
	}
	if !errors.Is(explained, bus.ErrNoQuorum) || !errors.Is(explained, err) ||
		!strings.Contains(explained.Error(), "JetStream has no quorum") || !strings.Contains(explained.Error(), "a majority of the") {
		t.Fatalf("publish without a quorum: %v, explained as %v; want it to say there is no quorum", err, explained)
	}
	t.Logf("publish without a quorum: %v", explained)
}
