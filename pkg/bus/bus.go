// Package bus connects a lifeboat process to NATS JetStream: an embedded
// server by default, or an external cluster. It provisions the three streams
// of DESIGN §2 and carries events through its own thin publisher and
// subscriber over nats.go's jetstream package (see jetstream.go, which also
// says why not Watermill).
package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
)

// Options say where the bus is. With no URLs an embedded server is started.
type Options struct {
	// URLs of an external NATS cluster; empty means embedded.
	URLs []string
	// Listen is the embedded server's client address (host:port).
	Listen string
	// DataDir holds the embedded server's JetStream file store.
	DataDir string
	// ServerName names the embedded server (defaults to the host name).
	ServerName string
	// Credentials is a NATS .creds file (JWT and NKey seed).
	Credentials string
	// NKey is a file holding an NKey seed.
	NKey string
	// TLS for an external cluster: CA to verify the servers, and a client
	// certificate and key when the servers require one.
	TLSCA, TLSCert, TLSKey string
	// Auth is who may connect to the embedded node; nil lets any client
	// in, which is allowed only when it listens on loopback (or Insecure).
	Auth *ServerAuth
	// Insecure lets an embedded node without Auth listen beyond loopback.
	Insecure bool
	// Cluster makes the embedded server one node of a NATS cluster over
	// routes, JetStream clustered (empty Listen: a single node).
	Cluster ClusterOptions
	// Replicas of each stream: 1 for a single embedded node, min(3, nodes)
	// for an embedded cluster, 3 for an external one (see
	// DefaultReplicas).
	Replicas int
	// DedupeWindow is JetStream's duplicate window on LIFEBOAT_EVENTS and
	// LIFEBOAT_COMMANDS: a Nats-Msg-Id seen within it is dropped.
	DedupeWindow time.Duration
	// EventsMaxAge bounds how long events are kept in LIFEBOAT_EVENTS.
	EventsMaxAge time.Duration
	// DLQMaxAge bounds how long dead letters are kept.
	DLQMaxAge time.Duration
	// ClientName identifies the connection in the server's monitoring.
	ClientName string
	// Logger receives connection and server messages.
	Logger *slog.Logger
}

// ClusterOptions join the embedded server to other lifeboat hosts' nodes.
type ClusterOptions struct {
	// Name of the cluster; every node's must match. Default "lifeboat".
	Name string
	// Listen is this node's route address (host:port).
	Listen string
	// Peers are the other nodes' route addresses; this node's own Listen
	// may be among them (every host can be given the same list).
	Peers []string
}

// Nodes is how many nodes the cluster is declared with, this one included.
func (c ClusterOptions) Nodes() int {
	if c.Listen == "" {
		return 1
	}
	return 1 + len(c.otherPeers())
}

// otherPeers are the peers without this node's own address.
func (c ClusterOptions) otherPeers() []string {
	var out []string
	for _, p := range c.Peers {
		if p != c.Listen && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// DefaultReplicas is the replication of streams and buckets when the
// configuration does not say: 3 on an external cluster, min(3, nodes) on
// an embedded one, 1 on a single node.
func DefaultReplicas(o Options) int {
	if len(o.URLs) > 0 {
		return 3
	}
	return min(3, o.Cluster.Nodes())
}

// NewOptions returns the defaults: an embedded server on 127.0.0.1:4222.
func NewOptions() Options {
	return Options{
		Listen:       "127.0.0.1:4222",
		Replicas:     1,
		DedupeWindow: 2 * time.Minute,
		EventsMaxAge: 7 * 24 * time.Hour,
		DLQMaxAge:    30 * 24 * time.Hour,
		ClientName:   "lifeboat",
		Logger:       slog.Default(),
	}
}

// Bus is a connection to JetStream, and the embedded server when there is one.
type Bus struct {
	NC     *nats.Conn
	JS     jetstream.JetStream
	Server *server.Server // nil for an external cluster
	opts   Options
	closed chan struct{} // closed by the connection's ClosedHandler
	routes *natsLogger   // the embedded server's; nil for an external cluster
	sysKey nkeys.KeyPair // the embedded node's system user (see System)
}

// Replicas is the replication of the streams, and of the buckets services
// create.
func (b *Bus) Replicas() int { return max(b.opts.Replicas, 1) }

// Connect starts the embedded server (when opts.URLs is empty) or dials the
// external cluster, retrying with backoff until ctx ends, and provisions the
// streams.
func Connect(ctx context.Context, opts Options) (*Bus, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	b := &Bus{opts: opts, closed: make(chan struct{})}
	var urls string
	if len(opts.URLs) == 0 {
		ns, nl, sys, err := startEmbedded(opts)
		if err != nil {
			return nil, err
		}
		b.Server, b.routes, b.sysKey = ns, nl, sys
		urls = ns.ClientURL()
	} else {
		urls = strings.Join(opts.URLs, ",")
	}
	var once sync.Once
	nc, err := dial(ctx, urls, opts, nats.ClosedHandler(func(*nats.Conn) { once.Do(func() { close(b.closed) }) }))
	if err != nil {
		b.Close()
		return nil, err
	}
	b.NC = nc
	js, err := jetstream.New(nc)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	b.JS = js
	if err := b.EnsureStreams(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// Close drains the connection (pending publishes and subscriptions, for up
// to the connection's drain timeout) and shuts the embedded server down.
func (b *Bus) Close() {
	if b.NC != nil {
		if err := b.NC.Drain(); err == nil {
			<-b.closed
		}
		b.NC.Close()
	}
	if b.Server != nil {
		b.Server.Shutdown()
		b.Server.WaitForShutdown()
	}
}

// ClientURL is the URL other NATS clients (the nats CLI) can use.
func (b *Bus) ClientURL() string {
	if b.Server != nil {
		return b.Server.ClientURL()
	}
	return b.NC.ConnectedUrlRedacted()
}

// StartEmbedded starts a JetStream-enabled NATS server on opts.Listen with its
// file store under opts.DataDir/nats.
func StartEmbedded(opts Options) (*server.Server, error) {
	ns, _, _, err := startEmbedded(opts)
	return ns, err
}

// startEmbedded is StartEmbedded, also returning the server's logger, which
// knows why routes to peers fail, and the node's system user.
func startEmbedded(opts Options) (*server.Server, *natsLogger, nkeys.KeyPair, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	host, portStr, err := net.SplitHostPort(opts.Listen)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bus: embedded NATS listen address %q: %w (want host:port, e.g. 127.0.0.1:4222)", opts.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bus: embedded NATS listen port %q is not a number", portStr)
	}
	if port != server.RANDOM_PORT {
		// nats-server only logs a failed bind; check first so the operator
		// is told which port is taken and how to change it.
		if err := portFree(opts.Listen); err != nil {
			return nil, nil, nil, fmt.Errorf("bus: embedded NATS cannot listen on %s: %w; another NATS server or lifeboat may be running there: stop it, or choose another address with --nats-listen (or nats.listen in the config)", opts.Listen, err)
		}
	}
	name := opts.ServerName
	if name == "" {
		name, _ = os.Hostname()
	}
	var cluster server.ClusterOpts
	var routes []*url.URL
	if c := opts.Cluster; c.Listen != "" {
		chost, cport, err := splitPort(c.Listen)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("bus: cluster listen address %q: %w (want host:port, e.g. 10.0.0.1:6222; set it with --cluster-listen or nats.cluster.listen)", c.Listen, err)
		}
		if err := portFree(c.Listen); err != nil {
			return nil, nil, nil, fmt.Errorf("bus: embedded NATS cannot listen for its cluster on %s: %w; another NATS server or lifeboat may be running there: stop it, or choose another address with --cluster-listen (or nats.cluster.listen in the config)", c.Listen, err)
		}
		cluster = server.ClusterOpts{Name: c.Name, Host: chost, Port: cport, ConnectBackoff: true}
		if cluster.Name == "" {
			cluster.Name = "lifeboat"
		}
		if strings.ContainsFunc(cluster.Name, unicode.IsSpace) || cluster.Name == "_" {
			return nil, nil, nil, fmt.Errorf("bus: cluster name %q: NATS refuses a name with spaces (and the name \"_\"); choose another with --cluster-name (or nats.cluster.name in the config), the same on every host", cluster.Name)
		}
		for _, p := range c.otherPeers() {
			host, port, err := splitPort(p)
			if err == nil && (host == "" || port == 0) {
				err = errors.New("names no host or port")
			}
			if err != nil {
				return nil, nil, nil, fmt.Errorf("bus: cluster peer %q: %w (want host:port of a peer's --cluster-listen, e.g. 10.0.0.2:6222; set them with --peers or nats.cluster.peers)", p, err)
			}
			routes = append(routes, &url.URL{Scheme: "nats-route", Host: p})
		}
	}
	sopts := &server.Options{
		ServerName: name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   filepath.Join(opts.DataDir, "nats"),
		NoSigs:     true,
		// Routes to peers that are down or do not resolve yet are retried
		// by the server for as long as it runs, with backoff (1 s doubling
		// to 30 s); every failure reaches natsLogger, which says which
		// peer, why and what to do at most every routeLogEvery per peer.
		Cluster:             cluster,
		Routes:              routes,
		ConnectErrorReports: 1,
		// Keep lifeboat's streams within what one machine can hold.
		JetStreamMaxStore:  -1,
		JetStreamMaxMemory: -1,
	}
	sys, err := applyAuth(sopts, opts)
	if err != nil {
		return nil, nil, nil, err
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bus: embedded NATS: %w", err)
	}
	nl := newNATSLogger(opts.Logger.With("component", "nats-server"), cluster.Name, opts.Cluster.otherPeers())
	ns.SetLoggerV2(nl, false, false, false)
	ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, nil, nil, fmt.Errorf("bus: embedded NATS on %s did not become ready in 30s (see the log above)", opts.Listen)
	}
	return ns, nl, sys, nil
}

// splitPort splits host:port with a numeric port.
func splitPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	return host, port, nil
}

// portFree says why addr cannot be listened on, if it cannot.
func portFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}

// dial connects to urls, retrying with exponential backoff (up to 30 s
// between attempts) while the servers cannot be reached, until ctx ends.
func dial(ctx context.Context, urls string, opts Options, extra ...nats.Option) (*nats.Conn, error) {
	nopts := []nats.Option{
		nats.DrainTimeout(5 * time.Second),
		nats.Name(opts.ClientName),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				opts.Logger.Warn("nats disconnected", slog.String("error", err.Error()))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			opts.Logger.Info("nats reconnected", slog.String("url", nc.ConnectedUrlRedacted()))
		}),
	}
	nopts = append(nopts, extra...)
	creds, err := DialOptions(opts)
	if err != nil {
		return nil, err
	}
	nopts = append(nopts, creds...)
	wait := 500 * time.Millisecond
	for {
		nc, err := nats.Connect(urls, nopts...)
		if err == nil {
			return nc, nil
		}
		if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) {
			return nil, fmt.Errorf("bus: NATS at %s refused our credentials: %w (check --nats-creds / --nats-nkey)", urls, err)
		}
		opts.Logger.Warn("cannot reach NATS; retrying",
			slog.String("urls", urls), slog.String("error", err.Error()), slog.Duration("retry_in", wait))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("bus: cannot reach NATS at %s: %w (is the cluster up? check --nats)", urls, err)
		case <-time.After(wait):
		}
		wait = min(wait*2, 30*time.Second)
	}
}

func tlsConfig(opts Options) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.TLSCA != "" {
		pem, err := os.ReadFile(opts.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("bus: TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("bus: TLS CA %s holds no PEM certificate", opts.TLSCA)
		}
		cfg.RootCAs = pool
	}
	if opts.TLSCert != "" || opts.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(opts.TLSCert, opts.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("bus: TLS client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// routeLogEvery is how often at most lifeboat logs a failing route to one
// peer: the server retries every second at first, doubling to 30 s.
const routeLogEvery = 5 * time.Second

// routeConnErr is the format of nats-server's failed route dial (a peer
// that does not answer or does not resolve); its arguments are the attempt
// and the error.
const routeConnErr = "Error trying to connect to route (attempt %v): %v"

// nameConflict is nats-server's refusal of a route between clusters of
// different names, logged by the node that refused it ("<addr> - rid:N -
// Rejecting ...") and by the one refused ("<addr> - rid:N - Route Error
// 'Rejecting ...'").
var nameConflict = regexp.MustCompile(`^(\S+) - rid:\d+ - (?:.* - )?(Route Error ')?Rejecting connection, cluster name "([^"]*)" does not match "([^"]*)"`)

// authRefused matches nats-server's refusal of a credential: a peer
// refusing this node's route ("<addr> - rid:N - Route Error
// 'Authorization Violation'"), or this node refusing a route or a client
// ("<addr> - rid:N - authentication error - User \"route\"", cid: for a
// client).
var authRefused = regexp.MustCompile(`^(\S+) - (rid|cid):\d+ - (Route Error 'Authorization Violation'|authentication error)`)

// routeFlush is a write on a route the peer has closed.
var routeFlush = regexp.MustCompile(`^\S+ - rid:\d+ - Error flushing: `)

// natsLogger routes nats-server's log lines to slog. Fatalf must not exit
// the process: lifeboat reports the failure itself. The server's lines
// about routes to peers are replaced by lifeboat's own, which say which
// peer, why and what to do, at most every routeLogEvery per peer: a peer
// that does not answer or does not resolve (warn), a peer of another
// cluster name (error). The server keeps retrying both.
type natsLogger struct {
	l       *slog.Logger
	cluster string   // this node's cluster name
	peers   []string // the configured peers, host:port
	every   time.Duration

	mu       sync.Mutex
	last     map[string]time.Time // by peer: when its failure was last logged
	problems map[string]peerProblem
	names    map[string]string // a dialled address → the configured peer it is
}

// peerProblem is the last failure of the route to a peer.
type peerProblem struct {
	why string
	at  time.Time
}

func newNATSLogger(l *slog.Logger, cluster string, peers []string) *natsLogger {
	return &natsLogger{l: l, cluster: cluster, peers: peers, every: routeLogEvery,
		last: map[string]time.Time{}, problems: map[string]peerProblem{}, names: map[string]string{}}
}

func (n *natsLogger) Noticef(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Fatalf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Debugf(format string, v ...any)  { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n *natsLogger) Tracef(format string, v ...any)  {}

func (n *natsLogger) Warnf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if msg == "Waiting for routing to be established..." {
		// Said better, with the peers, by the route lines and by
		// provisioning's "waiting for the JetStream cluster".
		n.l.Debug(msg)
		return
	}
	n.l.Warn(msg)
}

func (n *natsLogger) Errorf(format string, v ...any) {
	if format == routeConnErr && len(v) == 2 {
		n.routeFailed(v[0], v[1])
		return
	}
	msg := fmt.Sprintf(format, v...)
	if m := authRefused.FindStringSubmatch(msg); m != nil {
		n.authRefused(m[1], m[2], m[3] != "", msg)
		return
	}
	if routeFlush.MatchString(msg) {
		// A route the peer closed, refusing it: said by the lines above.
		n.l.Debug(msg)
		return
	}
	if m := nameConflict.FindStringSubmatch(msg); m != nil {
		n.nameConflict(m[1], m[2] != "", m[3], m[4], msg)
		return
	}
	if strings.HasSuffix(msg, " - "+server.ErrClusterNameRemoteConflict.Error()) {
		n.l.Debug(msg) // the refusal above, again
		return
	}
	n.l.Error(msg)
}

// routeFailed logs a failed dial of a route: which peer, why, what to do.
func (n *natsLogger) routeFailed(attempt, e any) {
	err, ok := e.(error)
	if !ok {
		err = fmt.Errorf("%v", e)
	}
	addr, why, fix := "", "cannot connect to it", "check that the host is up and that its cluster port is open to this host, or correct --peers (nats.cluster.peers)"
	var op *net.OpError
	refused := false
	switch msg := err.Error(); {
	case strings.HasPrefix(msg, `lookup for host "`):
		addr, _, _ = strings.Cut(strings.TrimPrefix(msg, `lookup for host "`), `"`)
		why, fix = "its host name does not resolve", "correct the host name in --peers (nats.cluster.peers), or add it to DNS or /etc/hosts"
	case errors.As(err, &op) && op.Addr != nil:
		addr = op.Addr.String()
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			why, refused = "nothing listens on that address (connection refused)", true
		case op.Timeout():
			why = "it does not answer (timed out): the host is down, unreachable, or a firewall drops the port"
		}
	}
	peer := n.peerFor(addr)
	if refused {
		fix = "start `lifeboat up` on that host with --cluster-listen " + peer + ", or correct --peers (nats.cluster.peers)"
	}
	if !n.due(peer, why) {
		return
	}
	n.l.Warn(fmt.Sprintf("cluster peer %s: %s; retrying with backoff", peer, why),
		slog.String("peer", peer), slog.String("error", err.Error()), slog.Any("attempt", attempt), slog.String("fix", fix))
}

// nameConflict logs a route refused because the two nodes' cluster names
// differ. addr is the remote end of the connection: the peer's route
// address when this node dialled it, else the peer's address and a port
// of its own.
func (n *natsLogger) nameConflict(addr string, dialled bool, a, b, raw string) {
	theirs := a
	if theirs == n.cluster {
		theirs = b
	}
	peer := n.peerFor(addr)
	if !dialled {
		peer = n.peerAt(addr)
	}
	why := fmt.Sprintf("its cluster name is %q, this node's %q", theirs, n.cluster)
	if !n.due(peer, why) {
		n.l.Debug(raw)
		return
	}
	n.l.Error(fmt.Sprintf("cluster name mismatch: this node's cluster is %q, %s's is %q, so NATS refuses the route between them (retrying meanwhile); give every host the same --cluster-name (nats.cluster.name in lifeboat.yaml) and restart the one that differs", n.cluster, peer, theirs),
		slog.String("peer", peer), slog.String("cluster", n.cluster), slog.String("peer_cluster", theirs))
}

// authRefused logs a refused credential: which end, which credential, and
// what to do, at most every n.every per address.
func (n *natsLogger) authRefused(addr, kind string, routeError bool, raw string) {
	// A route error on a connection this node dialled is the peer's
	// refusal; on one it accepted, the echo of this node's own.
	theyRefused := routeError && slices.Contains(n.peers, n.peerFor(addr))
	switch {
	case theyRefused:
		peer := n.peerFor(addr)
		if n.due(peer, "it refuses this node's route credential") {
			n.l.Error(fmt.Sprintf("cluster peer %s refused this node's route credential (retrying meanwhile): the hosts run with different cluster.json files; give every host the cluster.json of one lifeboat init-cluster run (--auth DIR)", peer),
				slog.String("peer", peer))
			return
		}
	case kind == "rid":
		peer := n.peerAt(addr)
		n.mu.Lock()
		n.problems[peer] = peerProblem{why: "it presents a wrong route credential", at: time.Now()}
		n.mu.Unlock()
		if n.rate("route from " + peer) {
			n.l.Error(fmt.Sprintf("refused a route from %s: wrong or missing route credential; if that node is one of this cluster's hosts, give it this cluster's cluster.json (--auth DIR)", peer),
				slog.String("peer", peer))
			return
		}
	default:
		host, _, _ := net.SplitHostPort(addr)
		if n.rate("client " + host) {
			n.l.Warn(fmt.Sprintf("refused a client from %s: wrong or missing credential (operators use --nats-nkey operator.nk from lifeboat init-cluster)", host),
				slog.String("client", addr))
			return
		}
	}
	n.l.Debug(raw)
}

// due records the problem of peer and says whether it is to be logged:
// at most once per n.every per peer.
func (n *natsLogger) due(peer, why string) bool {
	n.mu.Lock()
	n.problems[peer] = peerProblem{why: why, at: time.Now()}
	n.mu.Unlock()
	return n.rate(peer)
}

// rate says whether what is keyed by key is to be logged: at most once
// per n.every.
func (n *natsLogger) rate(key string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := time.Now()
	if now.Sub(n.last[key]) < n.every {
		return false
	}
	n.last[key] = now
	return true
}

// recentProblems says, for a log line, why routes failed within the last
// minute, peer by peer.
func (n *natsLogger) recentProblems() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for peer, p := range n.problems {
		if time.Since(p.at) < time.Minute {
			out = append(out, peer+": "+p.why)
		}
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// peerFor names the configured peer that addr (host:port dialled, or a
// host name that did not resolve) is, or addr itself for one the cluster
// told about (a peer's peer).
func (n *natsLogger) peerFor(addr string) string {
	if addr == "" {
		return "(unknown address)"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, ""
	}
	var byName []string
	for _, p := range n.peers {
		ph, pp, _ := net.SplitHostPort(p)
		if p == addr || ph == host && (port == "" || pp == port) {
			return p
		}
		if net.ParseIP(ph) == nil && pp == port {
			byName = append(byName, p)
		}
	}
	if len(byName) == 0 {
		return addr
	}
	n.mu.Lock()
	name, ok := n.names[addr]
	n.mu.Unlock()
	if ok {
		return name
	}
	// A peer given by name was dialled at one of its addresses.
	name = addr
	for _, p := range byName {
		ph, _, _ := net.SplitHostPort(p)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ips, _ := net.DefaultResolver.LookupHost(ctx, ph)
		cancel()
		if slices.Contains(ips, host) {
			name = p
			break
		}
	}
	n.mu.Lock()
	n.names[addr] = name
	n.mu.Unlock()
	return name
}

// peerAt names the peer behind a connection that peer opened from addr
// (its IP and a port of its own): the configured peer on that IP when
// there is exactly one, else "the node at IP".
func (n *natsLogger) peerAt(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	var found []string
	for _, p := range n.peers {
		if ph, _, _ := net.SplitHostPort(p); ph == host {
			found = append(found, p)
		}
	}
	if len(found) == 1 {
		return found[0]
	}
	return "the node at " + host
}
