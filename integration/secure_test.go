package integration

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/auth"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/client"
	"lifeboat.dev/pkg/hosttest"
	"lifeboat.dev/pkg/testtool"
)

// TestSecuredCluster: three `lifeboat up` processes started with the keys
// of `lifeboat init-cluster` and TLS certificates form one cluster that
// refuses an uninvited client and an uninvited route; a runner's
// credential reaches only its host's runner subjects; a command is carried
// out only when an operator key signed it, and every command leaves a
// CommandAudited event naming who signed it.
func TestSecuredCluster(t *testing.T) {
	c := hosttest.Start(t, hosttest.Options{Hosts: 3, Auth: true, TLS: true})
	h1 := c.Hosts[0]
	connect := func(seed string, extra ...nats.Option) (*nats.Conn, error) {
		opts := append([]nats.Option{nats.Timeout(5 * time.Second), nats.RootCAs(h1.CA)}, extra...)
		if seed != "" {
			o, err := nats.NkeyOptionFromSeed(seed)
			if err != nil {
				return nil, err
			}
			opts = append(opts, o)
		}
		return nats.Connect(h1.NATS, opts...)
	}

	t.Run("a client without a credential is refused", func(t *testing.T) {
		nc, err := connect("")
		if err == nil {
			nc.Close()
			t.Fatal("an anonymous client was let in")
		}
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("anonymous client: %v, want an authorization violation", err)
		}
		if nc, err := nats.Connect(h1.NATS, nats.Timeout(5*time.Second)); err == nil {
			nc.Close()
			t.Fatal("a client without TLS was let in")
		}
	})

	t.Run("a route without the route credential is refused, with it accepted", func(t *testing.T) {
		ca, cert, key := filepath.Join(filepath.Dir(h1.CA), "ca.pem"), filepath.Join(filepath.Dir(h1.CA), "node.pem"), filepath.Join(filepath.Dir(h1.CA), "node-key.pem")
		keys, err := auth.Load(c.Auth)
		if err != nil {
			t.Fatal(err)
		}
		routeTo := func(user, password string) *server.Server {
			tlsCfg, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cert, KeyFile: key, CaFile: ca, Verify: true})
			if err != nil {
				t.Fatal(err)
			}
			tlsCfg.ClientAuth, tlsCfg.RootCAs = tls.RequireAndVerifyClientCert, tlsCfg.ClientCAs
			u := &testURL{host: h1.Route, user: user, password: password}
			o := &server.Options{ServerName: "intruder-" + user, Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
				Cluster: server.ClusterOpts{Name: "lifeboat", Host: "127.0.0.1", Port: -1, TLSConfig: tlsCfg, TLSTimeout: 2},
				Routes:  server.RoutesFromStr(u.String())}
			s, err := server.NewServer(o)
			if err != nil {
				t.Fatal(err)
			}
			go s.Start()
			t.Cleanup(s.Shutdown)
			return s
		}
		// Routes to the cluster's nodes (named by their hosts): the two
		// test servers may route to each other (the intruder learns the
		// invited one's address from h1's INFO, and a test server asks
		// no credential), which counts for neither.
		nodes := map[string]bool{}
		for _, h := range c.Hosts {
			nodes[h.Name] = true
		}
		routes := func(s *server.Server) int {
			rz, err := s.Routez(nil)
			if err != nil {
				return 0
			}
			n := 0
			for _, r := range rz.Routes {
				if nodes[r.RemoteName] {
					n++
				}
			}
			return n
		}
		intruder := routeTo("route", "not-the-password")
		invited := routeTo(keys.Route.User, keys.Route.Password)
		// The invited one proves the test can see a route form.
		testtool.WaitFor(t, 30*time.Second, func() error {
			if routes(invited) == 0 {
				return errors.New("the route with the credential has not formed")
			}
			return nil
		})
		// The refusal is logged by the refusing node, naming the fix.
		testtool.WaitFor(t, 30*time.Second, func() error {
			if !strings.Contains(h1.Log(), "refused a route from") {
				return errors.New("h1 has not logged the refused route")
			}
			return nil
		})
		if n := routes(intruder); n != 0 {
			t.Fatalf("a route without the credential formed (%d routes to the cluster's nodes)", n)
		}
	})

	t.Run("a runner reaches only its host's runner subjects", func(t *testing.T) {
		violations := make(chan string, 10)
		runner, err := connect(filepath.Join(c.Auth, auth.RunnerSeedFile("h1")), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			violations <- err.Error()
		}))
		if err != nil {
			t.Fatal(err)
		}
		defer runner.Close()
		host, err := connect(h1.Seed)
		if err != nil {
			t.Fatal(err)
		}
		defer host.Close()
		got, err := host.SubscribeSync("lifeboat.runner.>")
		if err != nil {
			t.Fatal(err)
		}
		_ = host.Flush()
		for _, subj := range []string{"lifeboat.cmd.restore.failover", "lifeboat.cmd.dns-updater.set", "lifeboat.runner.h2.report", "lifeboat.runner.h1.report"} {
			if err := runner.Publish(subj, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
		}
		_ = runner.Flush()
		m, err := got.NextMsg(5 * time.Second)
		if err != nil || m.Subject != "lifeboat.runner.h1.report" {
			t.Fatalf("the runner's own subject: %v %v", m, err)
		}
		want := []string{"lifeboat.cmd.restore.failover", "lifeboat.cmd.dns-updater.set", "lifeboat.runner.h2.report"}
		var seen []string
		testtool.WaitFor(t, 10*time.Second, func() error {
			for {
				select {
				case v := <-violations:
					seen = append(seen, v)
					continue
				default:
				}
				break
			}
			for _, w := range want {
				if !strings.Contains(strings.Join(seen, "\n"), w) {
					return fmt.Errorf("no permissions violation reported for %s (seen: %q)", w, seen)
				}
			}
			return nil
		})
		if m, err := got.NextMsg(500 * time.Millisecond); err == nil {
			t.Fatalf("another host's runner subject was delivered: %s", m.Subject)
		}
		js, err := jetstream.New(host)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, events.StreamCommands)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.GetLastMsgForSubject(ctx, "lifeboat.cmd.restore.failover"); err == nil {
			t.Fatal("the runner's failover command reached the commands stream")
		}
	})

	t.Run("only signed commands are carried out, and each is audited", func(t *testing.T) {
		host, err := connect(h1.Seed)
		if err != nil {
			t.Fatal(err)
		}
		defer host.Close()
		js, err := jetstream.New(host)
		if err != nil {
			t.Fatal(err)
		}
		audits, err := host.SubscribeSync(events.EventSubject("audit", "command"))
		if err != nil {
			t.Fatal(err)
		}
		dlq, err := host.SubscribeSync(events.DLQSubject(events.ServiceDNSUpdater))
		if err != nil {
			t.Fatal(err)
		}
		_ = host.Flush()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := &events.DNSSet{Name: "nowhere.example.com.", Address: "10.9.9.9", Reason: "audit test"}
		unsigned, err := client.Command(ctx, js, cmd)
		if err != nil {
			t.Fatal(err)
		}
		op, err := auth.ReadSeed(filepath.Join(c.Auth, auth.OperatorSeedFile))
		if err != nil {
			t.Fatal(err)
		}
		signed, err := client.Command(client.WithSigner(ctx, op), js, cmd)
		if err != nil {
			t.Fatal(err)
		}
		byID := map[string]events.CommandAudited{}
		for len(byID) < 2 {
			m, err := audits.NextMsg(20 * time.Second)
			if err != nil {
				t.Fatalf("audit records so far %+v: %v", byID, err)
			}
			var a events.CommandAudited
			if err := json.Unmarshal(m.Data, &a); err != nil {
				t.Fatal(err)
			}
			byID[a.ID] = a
		}
		if a := byID[unsigned]; a.Accepted || !strings.Contains(a.Reason, "not signed") || a.Operator != "" {
			t.Errorf("unsigned command's audit = %+v, want refused as not signed", a)
		}
		opPub, _ := op.PublicKey()
		if a := byID[signed]; !a.Accepted || a.Operator != auth.OperatorName || a.Key != opPub || a.SignedAt.IsZero() || a.Service != events.ServiceDNSUpdater {
			t.Errorf("signed command's audit = %+v, want accepted, signed by %s (%s)", a, auth.OperatorName, opPub)
		}
		m, err := dlq.NextMsg(20 * time.Second)
		if err != nil {
			t.Fatalf("the unsigned command was not dead-lettered: %v", err)
		}
		if r := m.Header.Get(bus.HeaderDLQReason); !strings.Contains(r, "not signed") {
			t.Errorf("dead letter reason %q, want it to say the command was not signed", r)
		}
	})

	t.Run("a state-changing request needs an operator's signature", func(t *testing.T) {
		host, err := connect(h1.Seed)
		if err != nil {
			t.Fatal(err)
		}
		defer host.Close()
		securedRequests(t, c, host)
	})
}

// securedRequests, in TestSecuredCluster's cluster: a state-changing request (plan disable) is answered 403 unless an operator
// signed it.
func securedRequests(t *testing.T, c *hosttest.Cluster, host *nats.Conn) {
	op, err := auth.ReadSeed(filepath.Join(c.Auth, auth.OperatorSeedFile))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := api.PlanRequest{Name: "no-such-plan"}
	err = client.Call(ctx, host, events.ServiceBackupScheduler, api.PlanDisable, req, nil)
	if client.Code(err) != "403" || !strings.Contains(err.Error(), "not signed") {
		t.Errorf("unsigned plan disable: %v (code %q), want 403 saying it is not signed", err, client.Code(err))
	}
	err = client.Call(client.WithSigner(ctx, op), host, events.ServiceBackupScheduler, api.PlanDisable, req, nil)
	if err == nil || client.Code(err) == "403" {
		t.Errorf("signed plan disable of an unknown plan: %v (code %q), want the service's own answer", err, client.Code(err))
	}
}

// testURL is a route URL with a credential.
type testURL struct{ host, user, password string }

func (u *testURL) String() string {
	return "nats-route://" + u.user + ":" + u.password + "@" + u.host
}
