package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// shutdownTimeout bounds how long Serve waits for requests in flight at shutdown.
const shutdownTimeout = 5 * time.Second

// Handler serves /metrics (the process's registry), /healthz (200 "ok" while
// the process runs) and /readyz (200 "ok" when readiness returns nil, else
// 503 with its error; a nil readiness is always ready). The mux is returned so
// the caller can add the status page.
func (t *Telemetry) Handler(readiness func() error) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(t.registry, promhttp.HandlerOpts{Registry: t.registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if readiness != nil {
			if err := readiness(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "not ready: %v\n", err)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// Server is an HTTP server started by Serve.
type Server struct {
	addr string
	stop chan struct{}
	once sync.Once
	done chan struct{}
	err  error // why serving stopped, when it was not asked to
}

// Serve binds addr at once, so an address in use fails here with an error
// naming it, then serves h until ctx ends or Close is called, letting
// requests in flight finish. An empty addr serves nothing (HTTP disabled);
// port 0 picks a free port, which Addr reports.
func Serve(ctx context.Context, addr string, h http.Handler) (*Server, error) {
	s := &Server{stop: make(chan struct{}), done: make(chan struct{})}
	if addr == "" {
		close(s.done)
		return s, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("http: address %s is already in use; choose another with --http HOST:PORT: %w", addr, err)
		}
		return nil, fmt.Errorf("http: listening on %s (change it with --http HOST:PORT): %w", addr, err)
	}
	s.addr = ln.Addr().String()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		select {
		case err := <-served:
			s.err = fmt.Errorf("http: serving on %s: %w", s.addr, err)
			return
		case <-ctx.Done():
		case <-s.stop:
		}
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close() // requests still running after the timeout are cut
		}
		<-served
	}()
	return s, nil
}

// Addr is the address actually bound, e.g. "127.0.0.1:9180"; "" when the
// server was disabled.
func (s *Server) Addr() string { return s.addr }

// Done is closed once the server has stopped serving.
func (s *Server) Done() <-chan struct{} { return s.done }

// Close stops the server, waits for requests in flight (up to a few seconds)
// and returns why it had stopped if it failed before being asked to.
func (s *Server) Close() error {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	return s.err
}
