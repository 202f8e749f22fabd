package bus

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// ServerAuth is who may connect to the embedded node (package auth builds
// it from `lifeboat init-cluster`'s files): users by NKey, each with the
// subjects its role may use, and the credential routes between the
// cluster's nodes present.
type ServerAuth struct {
	Users []User
	// RouteUser and RoutePassword authenticate routes: this node requires
	// them of its peers and presents them to its peers.
	RouteUser, RoutePassword string
}

// User is one NKey allowed to connect, and what it may do.
type User struct {
	// Name says who it is, for logs: "host hot", "operator", "runner hot".
	Name string
	// NKey is the user's public NKey (U...).
	NKey string
	// Publish and Subscribe are the subjects it may use; nil is every
	// subject.
	Publish, Subscribe []string
}

// The accounts of the embedded node. Lifeboat's streams, buckets and
// subjects live in Account; the system account exists so that this
// process can ask the JetStream meta leader to remove a dead peer
// (Bus.System), which nats-server answers only there. Both are declared
// in every mode so that the data is in the same account whether or not
// the node requires authentication.
const (
	Account       = "LIFEBOAT"
	SystemAccount = "SYS"
	// openUser is the user an unauthenticated client becomes when the
	// node listens on loopback only and has no ServerAuth.
	openUser = "local"
)

// authConfig is the embedded node's accounts and users in nats-server's
// configuration language (JSON is a subset of it). sysKey is this
// process's own system-account user, a key made at start and never
// written anywhere.
func authConfig(a *ServerAuth, sysKey string) (string, error) {
	type perm struct {
		Allow []string `json:"allow"`
	}
	type perms struct {
		Publish   *perm `json:"publish,omitempty"`
		Subscribe *perm `json:"subscribe,omitempty"`
	}
	type user struct {
		NKey        string `json:"nkey,omitempty"`
		User        string `json:"user,omitempty"`
		Password    string `json:"password,omitempty"`
		Permissions *perms `json:"permissions,omitempty"`
	}
	type account struct {
		JetStream string `json:"jetstream,omitempty"`
		Users     []user `json:"users"`
	}
	cfg := struct {
		Accounts      map[string]account `json:"accounts"`
		SystemAccount string             `json:"system_account"`
		NoAuthUser    string             `json:"no_auth_user,omitempty"`
	}{SystemAccount: SystemAccount}
	lb := account{JetStream: "enabled"}
	if a == nil {
		// Loopback only: whoever reaches the port is on this machine.
		var pw [16]byte
		_, _ = rand.Read(pw[:])
		lb.Users = append(lb.Users, user{User: openUser, Password: hex.EncodeToString(pw[:])})
		cfg.NoAuthUser = openUser
	} else {
		for _, u := range a.Users {
			if !nkeys.IsValidPublicUserKey(u.NKey) {
				return "", fmt.Errorf("bus: %s: %q is not a user's public NKey (U...)", u.Name, u.NKey)
			}
			nu := user{NKey: u.NKey}
			if u.Publish != nil || u.Subscribe != nil {
				nu.Permissions = &perms{}
				if u.Publish != nil {
					nu.Permissions.Publish = &perm{Allow: u.Publish}
				}
				if u.Subscribe != nil {
					nu.Permissions.Subscribe = &perm{Allow: u.Subscribe}
				}
			}
			lb.Users = append(lb.Users, nu)
		}
	}
	cfg.Accounts = map[string]account{
		Account:       lb,
		SystemAccount: {Users: []user{{NKey: sysKey}}},
	}
	// nats-server's parser knows no \u escapes: keep '>' as it is.
	var out strings.Builder
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	err := enc.Encode(cfg)
	return out.String(), err
}

// loopback says whether addr (host:port) listens on loopback only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkExposure refuses an embedded node that listens beyond loopback
// without authentication, unless the operator said --insecure.
func checkExposure(opts Options) error {
	if opts.Auth != nil || opts.Insecure {
		return nil
	}
	for _, l := range []struct{ flag, addr string }{{"--nats-listen", opts.Listen}, {"--cluster-listen", opts.Cluster.Listen}} {
		if l.addr != "" && !loopback(l.addr) {
			return fmt.Errorf("bus: refusing to listen on %s (%s) without authentication: any machine that reaches it could join the cluster or send commands; run `lifeboat init-cluster` and start every host with --auth DIR (nats.auth in lifeboat.yaml), or, on a network you trust entirely, pass --insecure", l.addr, l.flag)
		}
	}
	return nil
}

// System connects to the embedded node's system account as this process's
// own system user: the JetStream meta group's administration (removing a
// dead peer, $JS.API.SERVER.REMOVE) is answered only there. The caller
// closes the connection. An external cluster has its own administrators:
// an error says so.
func (b *Bus) System(ctx context.Context) (*nats.Conn, error) {
	if b.Server == nil || b.sysKey == nil {
		return nil, fmt.Errorf("bus: no embedded node: the NATS cluster's system account belongs to its administrators (nats server raft peer-remove)")
	}
	pub, err := b.sysKey.PublicKey()
	if err != nil {
		return nil, err
	}
	opts := []nats.Option{nats.Name("lifeboat system " + b.opts.ServerName), nats.Nkey(pub, b.sysKey.Sign)}
	if d, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(time.Until(d)))
	}
	if b.opts.TLSCert != "" {
		cfg, err := tlsConfig(b.opts)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(cfg))
	}
	nc, err := nats.Connect(b.Server.ClientURL(), opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: system account: %w", err)
	}
	return nc, nil
}

// DialOptions are the nats.go options that present opts' credentials
// (a .creds file or an NKey seed) and TLS settings.
func DialOptions(opts Options) ([]nats.Option, error) {
	var out []nats.Option
	if opts.Credentials != "" {
		out = append(out, nats.UserCredentials(opts.Credentials))
	}
	if opts.NKey != "" {
		o, err := nats.NkeyOptionFromSeed(opts.NKey)
		if err != nil {
			return nil, fmt.Errorf("bus: nkey seed file %s: %w", opts.NKey, err)
		}
		out = append(out, o)
	}
	if opts.TLSCA != "" || opts.TLSCert != "" {
		cfg, err := tlsConfig(opts)
		if err != nil {
			return nil, err
		}
		out = append(out, nats.Secure(cfg))
	}
	return out, nil
}

// serverTLS is the embedded node's TLS: its certificate on the client
// port, and on the route port with the peers' certificates verified
// against the CA. nil without a certificate.
func serverTLS(opts Options) (clients, routes *server.TLSConfigOpts, err error) {
	if opts.TLSCert == "" && opts.TLSKey == "" {
		return nil, nil, nil
	}
	if opts.TLSCert == "" || opts.TLSKey == "" {
		return nil, nil, fmt.Errorf("bus: TLS needs both a certificate and its key (--nats-tls-cert and --nats-tls-key, nats.tls.cert and nats.tls.key)")
	}
	clients = &server.TLSConfigOpts{CertFile: opts.TLSCert, KeyFile: opts.TLSKey, CaFile: opts.TLSCA, Timeout: 2}
	if opts.Cluster.Listen != "" {
		if opts.TLSCA == "" {
			return nil, nil, fmt.Errorf("bus: TLS between cluster nodes needs the CA that signed every node's certificate (--nats-tls-ca, nats.tls.ca)")
		}
		routes = &server.TLSConfigOpts{CertFile: opts.TLSCert, KeyFile: opts.TLSKey, CaFile: opts.TLSCA, Verify: true, Timeout: 2}
	}
	return clients, routes, nil
}

// applyAuth lays the accounts, users and TLS over the embedded node's
// options; it returns the system user's key.
func applyAuth(sopts *server.Options, opts Options) (nkeys.KeyPair, error) {
	if err := checkExposure(opts); err != nil {
		return nil, err
	}
	sys, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	sysPub, _ := sys.PublicKey()
	text, err := authConfig(opts.Auth, sysPub)
	if err != nil {
		return nil, err
	}
	var acc server.Options
	if err := acc.ProcessConfigString(text); err != nil {
		return nil, fmt.Errorf("bus: embedded NATS accounts: %w", err)
	}
	sopts.Accounts, sopts.Users, sopts.Nkeys = acc.Accounts, acc.Users, acc.Nkeys
	sopts.SystemAccount, sopts.NoAuthUser = acc.SystemAccount, acc.NoAuthUser
	if a := opts.Auth; a != nil && opts.Cluster.Listen != "" {
		sopts.Cluster.Username, sopts.Cluster.Password = a.RouteUser, a.RoutePassword
		for _, r := range sopts.Routes {
			r.User = urlUser(a.RouteUser, a.RoutePassword)
		}
	}
	clients, routes, err := serverTLS(opts)
	if err != nil {
		return nil, err
	}
	if clients != nil {
		if sopts.TLSConfig, err = server.GenTLSConfig(clients); err != nil {
			return nil, fmt.Errorf("bus: TLS certificate: %w", err)
		}
		sopts.TLS, sopts.TLSTimeout = true, 2
	}
	if routes != nil {
		if sopts.Cluster.TLSConfig, err = server.GenTLSConfig(routes); err != nil {
			return nil, fmt.Errorf("bus: cluster TLS: %w", err)
		}
		// A node dials its peers too: as nats-server does for a cluster's
		// tls block, the CA verifies both ends.
		sopts.Cluster.TLSConfig.ClientAuth = tls.RequireAndVerifyClientCert
		sopts.Cluster.TLSConfig.RootCAs = sopts.Cluster.TLSConfig.ClientCAs
		sopts.Cluster.TLSTimeout = 2
	}
	return sys, nil
}

// urlUser is the userinfo of a route URL.
func urlUser(user, password string) *url.Userinfo { return url.UserPassword(user, password) }
