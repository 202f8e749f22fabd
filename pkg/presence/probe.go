package presence

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/pkg/bus"
)

// DefaultProbeTimeout bounds a whole probe.
const DefaultProbeTimeout = 5 * time.Second

// ProbeOptions say whom Probe asks, and as whom.
type ProbeOptions struct {
	// Peers are the cluster peers' route addresses (host:port).
	Peers []string
	// Self is this node's own route address, skipped among Peers.
	Self string
	// Host, Services and Nonce are the claim to check (as Identity's).
	Host     string
	Services []string
	Nonce    Nonce
	// Dial are the nats.go options that present this process's
	// credentials and TLS (bus.DialOptions).
	Dial []nats.Option
	// RouteTLS, when the nodes' routes run TLS, is the client side of
	// it (bus.ClientTLS); nil for plain routes.
	RouteTLS *tls.Config
	// Timeout bounds the whole probe (default DefaultProbeTimeout).
	Timeout time.Duration
	Logger  *slog.Logger
}

// routeInfo is what Probe reads of the INFO a NATS server sends first on
// every route connection.
type routeInfo struct {
	Name        string   `json:"server_name"`
	ConnectURLs []string `json:"connect_urls"`
}

// Probe asks the cluster, before this process's own NATS node joins it,
// whether another live process holds the claim: it reads the INFO each
// peer's route port sends, skips a node named like this host (the live
// duplicate's own) and, through the client URLs another peer advertises,
// reads the presence keys as Check does. It returns a *TakenError when
// another process holds a key, or else when a node named like this host
// answers at a peer's address (its process has not claimed yet); nil when
// the keys are free or this data directory's, and also when nobody can
// tell within the timeout (no peer answers, no quorum: a whole-site cold
// start) — then the claim after connecting decides.
func Probe(ctx context.Context, o ProbeOptions) error {
	if o.Timeout <= 0 {
		o.Timeout = DefaultProbeTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	var peers []string
	for _, p := range o.Peers {
		if p != o.Self && !slices.Contains(peers, p) {
			peers = append(peers, p)
		}
	}
	if len(peers) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	type answer struct {
		peer string
		info routeInfo
		err  error
	}
	answers := make(chan answer, len(peers))
	for _, p := range peers {
		go func() {
			info, err := readRouteInfo(ctx, p, o.RouteTLS)
			answers <- answer{p, info, err}
		}()
	}
	var namesake string   // a peer whose node is named like this host
	var problems []string // why peers could not tell
	free := false         // a peer told: no other process holds the keys
	for range peers {
		a := <-answers
		switch {
		case a.err != nil:
			problems = append(problems, a.peer+": "+a.err.Error())
		case a.info.Name == o.Host:
			namesake = a.peer
			o.Logger.Warn("presence probe: a NATS node named like this host answers at a peer's address; asking the other peers",
				slog.String("peer", a.peer))
		case free:
		case len(a.info.ConnectURLs) == 0:
			problems = append(problems, a.peer+": advertises no client URL")
		default:
			err := o.ask(ctx, a.peer, a.info.ConnectURLs)
			var te *TakenError
			switch {
			case errors.As(err, &te):
				return err
			case err == nil:
				free = true
			default:
				problems = append(problems, a.peer+": "+err.Error())
			}
		}
	}
	// A live node named like this host at another address is another
	// process running as this host, whatever the keys say yet.
	if namesake != "" {
		return &TakenError{Host: o.Host, Node: namesake}
	}
	if free {
		return nil
	}
	o.Logger.Info("presence probe: no peer could tell whether another process runs as this host; the claim after connecting decides",
		slog.String("why", strings.Join(problems, "; ")))
	return nil
}

// ask reads the presence keys through a peer's client URLs, retrying
// while its cluster elects a leader, until ctx ends.
func (o ProbeOptions) ask(ctx context.Context, peer string, urls []string) error {
	var list []string
	for _, u := range urls {
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		list = append(list, u)
	}
	opts := append([]nats.Option{nats.Name("lifeboat presence probe " + o.Host), nats.NoReconnect(), nats.Timeout(2 * time.Second)}, o.Dial...)
	nc, err := nats.Connect(strings.Join(list, ","), opts...)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", strings.Join(list, ","), err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	var taken error
	err = bus.RetryForming(ctx, o.Logger, func() string { return "a majority of the cluster's nodes must run" }, "presence probe at "+peer, func(ctx context.Context) error {
		err := Check(ctx, js, o.Host, o.Services, o.Nonce)
		var te *TakenError
		if errors.As(err, &te) {
			taken = err
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	return taken
}

// readRouteInfo dials a route address and reads the server's INFO (after
// the TLS handshake when tlsCfg is set: a TLS route port shakes hands
// first).
func readRouteInfo(ctx context.Context, addr string, tlsCfg *tls.Config) (routeInfo, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return routeInfo{}, err
	}
	defer conn.Close()
	deadline := time.Now().Add(2 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	if tlsCfg != nil {
		cfg := tlsCfg.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return routeInfo{}, fmt.Errorf("TLS: %w", err)
		}
		conn = tc
	}
	return parseInfo(bufio.NewReaderSize(conn, 64<<10))
}

// parseInfo reads the first protocol line, INFO {json}.
func parseInfo(r *bufio.Reader) (routeInfo, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return routeInfo{}, fmt.Errorf("reading INFO: %w", err)
	}
	op, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
	if !strings.EqualFold(op, "INFO") {
		return routeInfo{}, fmt.Errorf("not a NATS route port: its first line is %q", truncate(line, 40))
	}
	var info routeInfo
	if err := json.Unmarshal([]byte(rest), &info); err != nil {
		return routeInfo{}, fmt.Errorf("unreadable INFO: %w", err)
	}
	return info, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
