package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"lifeboat.dev/pkg/testtool"
)

// get fetches url and returns the status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func TestHandler(t *testing.T) {
	clearOTelEnv(t)
	tel := setup(t, Options{})
	var notReady atomic.Pointer[error]
	srv := httptest.NewServer(tel.Handler(func() error {
		if err := notReady.Load(); err != nil {
			return *err
		}
		return nil
	}))
	defer srv.Close()

	if code, body := get(t, srv.URL+"/healthz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	if code, body := get(t, srv.URL+"/readyz"); code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Errorf("/readyz when ready = %d %q, want 200 ok", code, body)
	}
	err := errors.New("bus: connecting to nats://n1:4222")
	notReady.Store(&err)
	if code, body := get(t, srv.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, err.Error()) {
		t.Errorf("/readyz when not ready = %d %q, want 503 with the reason", code, body)
	}
	if code, body := get(t, srv.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while not ready = %d %q, want 200: the process still runs", code, body)
	}

	tel.Handled("restore", subject, OutcomeOK)
	tel.HandleSeconds.WithLabelValues("restore").Observe(0.002)
	tel.OutboxPending.WithLabelValues("restore").Set(3)
	tel.DeadLetters.WithLabelValues("restore", "malformed").Inc()
	code, body := get(t, srv.URL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`lifeboat_messages_handled_total{outcome="ok",service="restore",subject="lifeboat.event.host.down"} 1`,
		`lifeboat_message_handle_seconds_count{service="restore"} 1`,
		`lifeboat_outbox_pending{service="restore"} 3`,
		`lifeboat_dead_letters_total{reason="malformed",service="restore"} 1`,
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	if code, _ := get(t, srv.URL+"/nothing"); code != http.StatusNotFound {
		t.Errorf("/nothing = %d, want 404", code)
	}
}

func TestHandlerNilReadinessIsReady(t *testing.T) {
	clearOTelEnv(t)
	srv := httptest.NewServer(setup(t, Options{}).Handler(nil))
	defer srv.Close()
	if code, _ := get(t, srv.URL+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with nil readiness = %d, want 200", code)
	}
}

func TestHandledBoundsSubjects(t *testing.T) {
	clearOTelEnv(t)
	tel := setup(t, Options{})
	for i := range maxSubjects {
		tel.Handled("restore", fmt.Sprintf("lifeboat.event.x.n%d", i), OutcomeDeadLetter)
	}
	tel.Handled("restore", "lifeboat.event.made.up", OutcomeDeadLetter)
	tel.Handled("restore", "lifeboat.event.x.n0", OutcomeDeadLetter)
	if got := testutil.ToFloat64(tel.MessagesHandled.WithLabelValues("restore", OtherSubject, OutcomeDeadLetter)); got != 1 {
		t.Errorf("%q count = %v, want 1 once the subject label is full", OtherSubject, got)
	}
	if got := testutil.ToFloat64(tel.MessagesHandled.WithLabelValues("restore", "lifeboat.event.x.n0", OutcomeDeadLetter)); got != 2 {
		t.Errorf("a subject seen before the bound = %v, want 2", got)
	}
	if n := testutil.CollectAndCount(tel.MessagesHandled); n != maxSubjects+1 {
		t.Errorf("%d series, want %d", n, maxSubjects+1)
	}
}

func TestServeUntilContextEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hello") })
	s, err := Serve(ctx, "127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	if _, port, _ := net.SplitHostPort(s.Addr()); port == "0" || port == "" {
		t.Fatalf("Addr() = %q, want the port actually bound", s.Addr())
	}
	if code, body := get(t, "http://"+s.Addr()+"/"); code != http.StatusOK || body != "hello" {
		t.Fatalf("GET = %d %q", code, body)
	}
	cancel()
	select {
	case <-s.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("server still serving after its context ended")
	}
	if _, err := net.Dial("tcp", s.Addr()); err == nil {
		t.Error("port still accepts connections after shutdown")
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close after shutdown: %v", err)
	}
}

func TestServeCloseLetsRequestsFinish(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "finished")
	})
	s, err := Serve(context.Background(), "127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + s.Addr() + "/")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{string(b), err}
	}()
	<-started
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	// Shutdown stops listening before it waits for requests in flight.
	testtool.WaitFor(t, 10*time.Second, func() error {
		c, err := net.Dial("tcp", s.Addr())
		if err == nil {
			c.Close()
			return errors.New("still accepting connections after Close")
		}
		return nil
	})
	close(release)
	if r := <-got; r.err != nil || r.body != "finished" {
		t.Errorf("request in flight at Close: %q, %v; want it finished", r.body, r.err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestServePortInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := Serve(context.Background(), l.Addr().String(), http.NotFoundHandler())
	if err == nil {
		s.Close()
		t.Fatal("Serve on a port in use succeeded")
	}
	for _, want := range []string{l.Addr().String(), "already in use", "--http"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestServeBadAddress(t *testing.T) {
	t.Parallel()
	_, err := Serve(context.Background(), "127.0.0.1:notaport", http.NotFoundHandler())
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:notaport") || !strings.Contains(err.Error(), "--http") {
		t.Fatalf("Serve on a bad address: %v, want an error naming it and --http", err)
	}
}

func TestServeEmptyAddressIsDisabled(t *testing.T) {
	t.Parallel()
	s, err := Serve(context.Background(), "", http.NotFoundHandler())
	if err != nil || s.Addr() != "" {
		t.Fatalf("Serve(\"\") = %v, %v; want a disabled server", s, err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
