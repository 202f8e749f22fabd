package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"lifeboat.dev/pkg/auth"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/client"
)

// clientFlags are how an operator command reaches a running control plane.
type clientFlags struct {
	url, creds, nkey, tlsCA string
	timeout                 time.Duration
	json                    bool
	cmd                     *cobra.Command
}

func (cf *clientFlags) add(c *cobra.Command) {
	cf.cmd = c
	f := c.Flags()
	f.StringVar(&cf.url, "nats", "nats://127.0.0.1:4222", "NATS URLs of the control plane, comma-separated")
	f.StringVar(&cf.creds, "nats-creds", "", "NATS credentials (.creds) file")
	f.StringVar(&cf.nkey, "nats-nkey", "", "NATS NKey seed file (operator.nk from lifeboat init-cluster: it also signs commands)")
	f.StringVar(&cf.tlsCA, "nats-tls-ca", "", "CA file to verify the NATS servers' certificates")
	f.DurationVar(&cf.timeout, "timeout", 5*time.Second, "how long to wait for the control plane")
	f.BoolVar(&cf.json, "json", false, "print JSON")
}

// connect dials NATS once (an operator command does not wait for a cluster
// that is down: it says so). With an NKey seed, the command's context from
// here on signs what it sends (client.WithSigner).
func (cf *clientFlags) connect() (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name("lifeboat cli"), nats.Timeout(cf.timeout)}
	creds, err := bus.DialOptions(bus.Options{Credentials: cf.creds, TLSCA: cf.tlsCA})
	if err != nil {
		return nil, nil, err
	}
	opts = append(opts, creds...)
	if cf.nkey != "" {
		kp, err := auth.ReadSeed(cf.nkey)
		if err != nil {
			return nil, nil, err
		}
		pub, _ := kp.PublicKey()
		opts = append(opts, nats.Nkey(pub, kp.Sign))
		cf.cmd.SetContext(client.WithSigner(cf.cmd.Context(), kp))
	}
	nc, err := nats.Connect(cf.url, opts...)
	switch {
	case errors.Is(err, nats.ErrAuthorization):
		return nil, nil, fmt.Errorf("the control plane's NATS at %s refused this client: %w (a secured cluster needs --nats-nkey with operator.nk from lifeboat init-cluster; check that the key is this cluster's)", cf.url, err)
	case err != nil:
		return nil, nil, fmt.Errorf("cannot reach the control plane's NATS at %s: %w (is `lifeboat up` running? point at it with --nats)", cf.url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

func (cf *clientFlags) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, cf.timeout)
}

// call asks service's endpoint with req and decodes the answer into reply,
// waiting at most timeout (see client.Call for its errors).
func call(parent context.Context, nc *nats.Conn, timeout time.Duration, service, endpoint string, req, reply any) error {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	return client.Call(ctx, nc, service, endpoint, req, reply)
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
