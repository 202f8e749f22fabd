package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/presence"
)

// nodePresence is the presence "service" of an embedded NATS node: a
// process running one claims it too, so that two processes with the same
// --host but different --target cannot both start a node of that name
// (nodes of one name share one Raft identity).
const nodePresence = "nats"

// hostIdentity is this process's claim to its host name (DESIGN §1 "Hosts
// and the cluster"): its data directory, locked for the process's life,
// and that directory's nonce.
type hostIdentity struct {
	lock     *presence.DirLock
	nonce    presence.Nonce
	services []string
	started  time.Time
}

// lockData locks the data directory (a second process on it is refused at
// once, naming the pid) and loads its presence nonce. Release it with
// unlock.
func lockData(cfg Config, targets []string, started time.Time) (*hostIdentity, error) {
	l, err := presence.LockDir(cfg.Data)
	if err != nil {
		return nil, err
	}
	n, err := presence.LoadNonce(cfg.Data)
	if err != nil {
		_ = l.Unlock()
		return nil, err
	}
	services := slices.Clone(targets)
	if len(cfg.NATS.URLs) == 0 {
		services = append(services, nodePresence)
	}
	return &hostIdentity{lock: l, nonce: n, services: services, started: started}, nil
}

func (hi *hostIdentity) unlock() { _ = hi.lock.Unlock() }

// probe refuses a duplicate before the embedded node joins the cluster: it
// asks the peers whether another live process holds this host's presence
// (see presence.Probe). Only an embedded node with peers probes; when
// nobody can tell (a whole-site cold start) the claim after connecting
// decides.
func (hi *hostIdentity) probe(ctx context.Context, cfg Config, bopts bus.Options, logger *slog.Logger) error {
	if len(cfg.NATS.URLs) > 0 || cfg.NATS.Cluster.Listen == "" || len(cfg.NATS.Cluster.Peers) == 0 {
		return nil
	}
	dial, err := bus.DialOptions(bopts)
	if err != nil {
		return err
	}
	o := presence.ProbeOptions{
		Peers: cfg.NATS.Cluster.Peers, Self: cfg.NATS.Cluster.Listen,
		Host: cfg.Host, Services: hi.services, Nonce: hi.nonce,
		Dial: dial, Logger: logger,
	}
	if bopts.TLSCert != "" {
		// The nodes' routes run TLS (bus's serverTLS): shake hands first.
		if o.RouteTLS, err = bus.ClientTLS(bopts); err != nil {
			return err
		}
	}
	return presence.Probe(ctx, o)
}

// claim claims this host's presence for every service through b: a
// process restarted from the same data directory reclaims at once, a
// duplicate is refused naming the live process.
func (hi *hostIdentity) claim(ctx context.Context, b *bus.Bus, cfg Config, logger *slog.Logger) (*presence.Presence, error) {
	o := presence.NewOptions()
	o.Replicas, o.Logger = b.Replicas(), logger
	bucket, err := presence.Open(ctx, b.JS, o)
	if err != nil {
		return nil, err
	}
	machine, _ := os.Hostname()
	data := cfg.Data
	if abs, err := filepath.Abs(data); err == nil {
		data = abs
	}
	return bucket.Claim(ctx, presence.Identity{
		Host: cfg.Host, Services: hi.services, PID: os.Getpid(), Hostname: machine,
		Address: cfg.HTTP, NATS: b.ClientURL(), DataDir: data, StartedAt: hi.started, Nonce: hi.nonce,
	})
}

// releasePresence gives this host's presence back on a clean stop, so that
// nothing of this process lingers for the TTL.
func releasePresence(p *presence.Presence, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := p.Release(ctx); err != nil {
		logger.Warn("presence not released; it lapses within its TTL", slog.String("error", err.Error()))
	}
}
