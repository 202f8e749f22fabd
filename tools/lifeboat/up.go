package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/spf13/cobra"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/auth"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/config"
	"lifeboat.dev/pkg/instances"
	"lifeboat.dev/pkg/lease"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/telemetry"
	backupscheduler "lifeboat.dev/services/backup-scheduler"
	dnsupdater "lifeboat.dev/services/dns-updater"
	jobtracker "lifeboat.dev/services/job-tracker"
	"lifeboat.dev/services/restore"
	syncer "lifeboat.dev/services/sync"
	volumemonitor "lifeboat.dev/services/volume-monitor"
)

// specs builds each service's Spec by name, from the loaded config.
var specs = map[string]func(cfg Config) (service.Spec, error){
	backupscheduler.Name: func(cfg Config) (service.Spec, error) { return backupscheduler.Spec(cfg.Backup) },
	syncer.Name:          syncSpec,
	restore.Name:         noConfig(restore.Spec),
	jobtracker.Name:      noConfig(jobtracker.Spec),
	volumemonitor.Name:   noConfig(volumemonitor.Spec),
	dnsupdater.Name:      func(cfg Config) (service.Spec, error) { return dnsupdater.Spec(cfg.DNS) },
}

// syncSpec gives sync this host's directory of every plan (where it keeps
// what other hosts ship to it) and the instances (whose other hosts are a
// backup's targets).
func syncSpec(cfg Config) (service.Spec, error) {
	plans, err := cfg.Backup.Normalize(cfg.Data)
	if err != nil {
		return service.Spec{}, err
	}
	sc := cfg.sync
	sc.Plans, sc.Instances = map[string]syncer.Plan{}, cfg.Instances
	for _, p := range plans {
		sc.Plans[p.Name] = syncer.Plan{Directory: p.Directory, Instance: p.Instance, Targets: p.Targets}
	}
	return syncer.Spec(sc)
}

// noConfig adapts the Spec of a service that takes no configuration.
func noConfig(spec func() (service.Spec, error)) func(Config) (service.Spec, error) {
	return func(Config) (service.Spec, error) { return spec() }
}

type upFlags struct {
	config, data, target, nats, listen, http, host string
	clusterName, clusterListen, peers              string
	creds, nkey, tlsCA, tlsCert, tlsKey, auth      string
	insecure                                       bool
	replicas                                       int
	logLevel, logFormat                            string
}

func newUpCmd() *cobra.Command {
	var fl upFlags
	c := &cobra.Command{
		Use:   "up",
		Short: "Run the control plane: every service, or a subset with --target",
		Long: `Run Lifeboat's services in this process. With no --nats an embedded NATS
server with JetStream is started (file store under the data directory);
with --nats URL[,URL] the services join an external cluster, whose streams
get 3 replicas. SIGTERM or SIGINT stops taking messages, finishes the ones
in flight, flushes the outboxes and exits.`,
		Example: `  lifeboat up
  lifeboat up --config lifeboat.yaml
  lifeboat up --host hot --cluster-listen 10.0.0.1:6222 --peers 10.0.0.2:6222,10.0.0.3:6222
  lifeboat up --host hot --auth /etc/lifeboat/secrets --nats-listen 0.0.0.0:4222 \
    --cluster-listen 10.0.0.1:6222 --peers 10.0.0.2:6222,10.0.0.3:6222
  lifeboat up --target sync,restore --nats nats://n1:4222,nats://n2:4222,nats://n3:4222`,
		Args: noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := fl.resolve(c)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return up(ctx, cfg, c.ErrOrStderr())
		},
	}
	f := c.Flags()
	f.StringVar(&fl.config, "config", "", "YAML config file (see deploy/examples/lifeboat.yaml)")
	f.StringVar(&fl.data, "data", "", "data directory (default lifeboat-data)")
	f.StringVar(&fl.target, "target", "", "services to run, comma-separated, or all (default all)")
	f.StringVar(&fl.nats, "nats", "", "external NATS cluster URLs, comma-separated (default: embedded server)")
	f.StringVar(&fl.listen, "nats-listen", "", "embedded NATS client address (default 127.0.0.1:4222)")
	f.StringVar(&fl.auth, "auth", "", "directory written by `lifeboat init-cluster`: this host reads cluster.json and host-<host>.nk from it; clients and routes must then authenticate")
	f.BoolVar(&fl.insecure, "insecure", false, "let the embedded NATS node listen beyond loopback without --auth (only on a network where every machine is trusted)")
	f.StringVar(&fl.creds, "nats-creds", "", "NATS credentials (.creds) file")
	f.StringVar(&fl.nkey, "nats-nkey", "", "NATS NKey seed file")
	f.StringVar(&fl.tlsCA, "nats-tls-ca", "", "CA file to verify the NATS servers")
	f.StringVar(&fl.tlsCert, "nats-tls-cert", "", "client certificate for NATS")
	f.StringVar(&fl.tlsKey, "nats-tls-key", "", "client key for NATS")
	f.StringVar(&fl.clusterListen, "cluster-listen", "", "this node's cluster (route) address, host:port: the embedded server joins the other hosts' nodes")
	f.StringVar(&fl.peers, "peers", "", "the other nodes' cluster addresses, comma-separated (this node's own may be listed too)")
	f.StringVar(&fl.clusterName, "cluster-name", "", "the NATS cluster's name; every node's must match (default lifeboat)")
	f.IntVar(&fl.replicas, "replicas", 0, "stream replicas (default 1 embedded, min(3, nodes) in an embedded cluster, 3 with --nats)")
	f.StringVar(&fl.http, "http", "", "address for /healthz, /readyz, /metrics (default 127.0.0.1:9180)")
	f.StringVar(&fl.host, "host", "", "this host's identity (default the hostname)")
	f.StringVar(&fl.logLevel, "log-level", "", "debug, info, warn or error (default info)")
	f.StringVar(&fl.logFormat, "log-format", "", "text or json (default text)")
	return c
}

// resolve loads the config file and lays the flags that were given over it.
func (fl *upFlags) resolve(c *cobra.Command) (Config, error) {
	cfg, file, err := loadConfig(fl.config)
	if err != nil {
		return cfg, err
	}
	set := func(name string, dst *string, v string) {
		if c.Flags().Changed(name) {
			*dst = v
		}
	}
	set("data", &cfg.Data, fl.data)
	set("http", &cfg.HTTP, fl.http)
	set("host", &cfg.Host, fl.host)
	set("nats-listen", &cfg.NATS.Listen, fl.listen)
	set("auth", &cfg.NATS.Auth, fl.auth)
	if c.Flags().Changed("insecure") {
		cfg.NATS.Insecure = fl.insecure
	}
	set("nats-creds", &cfg.NATS.Credentials, fl.creds)
	set("nats-nkey", &cfg.NATS.NKey, fl.nkey)
	set("nats-tls-ca", &cfg.NATS.TLS.CA, fl.tlsCA)
	set("nats-tls-cert", &cfg.NATS.TLS.Cert, fl.tlsCert)
	set("nats-tls-key", &cfg.NATS.TLS.Key, fl.tlsKey)
	set("log-level", &cfg.Log.Level, fl.logLevel)
	set("log-format", &cfg.Log.Format, fl.logFormat)
	set("cluster-listen", &cfg.NATS.Cluster.Listen, fl.clusterListen)
	set("cluster-name", &cfg.NATS.Cluster.Name, fl.clusterName)
	if c.Flags().Changed("peers") {
		cfg.NATS.Cluster.Peers = splitList(fl.peers)
	}
	if c.Flags().Changed("target") {
		cfg.Targets = []string{fl.target}
	}
	if c.Flags().Changed("nats") {
		cfg.NATS.URLs = splitList(fl.nats)
	}
	if c.Flags().Changed("replicas") {
		cfg.NATS.Replicas = fl.replicas
	}
	if err := cfg.validate(file); err != nil {
		// A bad value the file did not set came from a flag: a usage error.
		var ce *config.Error
		if errors.As(err, &ce) && !file.Has(ce.Key) {
			return cfg, usagef(c, "%s: %s (check the flag that sets it)", ce.Key, ce.Msg)
		}
		return cfg, err
	}
	return cfg, nil
}

// up runs the configured services until ctx ends.
func up(ctx context.Context, cfg Config, stderr interface{ Write([]byte) (int, error) }) error {
	level := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}[cfg.Log.Level]
	logger := telemetry.NewLogger(stderr, level, cfg.Log.Format == "json").With(slog.String("host", cfg.Host))
	slog.SetDefault(logger)
	targets, _ := resolveTargets(cfg.Targets)
	started := time.Now()
	// The data directory is this process's alone: a second process on it
	// is refused at once, before any port is bound (up_presence.go).
	ident, err := lockData(cfg, targets, started)
	if err != nil {
		return err
	}
	defer ident.unlock()

	tel, err := telemetry.Setup(ctx, telemetry.Options{ServiceName: "lifeboat", ServiceVersion: version, Host: cfg.Host})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()

	// Bind HTTP first: a port in use fails at once, before anything starts.
	// Ready once every service runs, and for as long as JetStream has a
	// quorum.
	var readyMu sync.Mutex
	notReady := "starting"
	var readyBus atomic.Pointer[bus.Bus]
	srv, err := telemetry.Serve(ctx, cfg.HTTP, tel.Handler(func() error {
		readyMu.Lock()
		why := notReady
		readyMu.Unlock()
		if why != "" {
			return errors.New(why)
		}
		if b := readyBus.Load(); b != nil {
			jctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			return b.JetStreamReady(jctx)
		}
		return nil
	}))
	if err != nil {
		return err
	}
	defer srv.Close()

	bopts := bus.NewOptions()
	bopts.URLs = cfg.NATS.URLs
	bopts.Listen = cfg.NATS.Listen
	bopts.DataDir = cfg.Data
	bopts.ServerName = cfg.Host
	bopts.Credentials, bopts.NKey = cfg.NATS.Credentials, cfg.NATS.NKey
	bopts.TLSCA, bopts.TLSCert, bopts.TLSKey = cfg.NATS.TLS.CA, cfg.NATS.TLS.Cert, cfg.NATS.TLS.Key
	bopts.Cluster = bus.ClusterOptions{Name: cfg.NATS.Cluster.Name, Listen: cfg.NATS.Cluster.Listen, Peers: cfg.NATS.Cluster.Peers}
	bopts.Replicas = cfg.NATS.Replicas
	bopts.DedupeWindow = cfg.NATS.DedupeWindow
	bopts.ClientName = "lifeboat " + cfg.Host
	bopts.Logger = logger
	bopts.Insecure = cfg.NATS.Insecure
	var keys *auth.Cluster
	if cfg.NATS.Auth != "" {
		if keys, err = auth.Load(cfg.NATS.Auth); err != nil {
			return err
		}
		if bopts.NKey, err = keys.HostSeed(cfg.NATS.Auth, cfg.Host); err != nil {
			return err
		}
		bopts.Auth = keys.ServerAuth()
	}
	// A second live process of this host is refused before its node
	// joins the cluster, and by the claim once connected.
	if err := ident.probe(ctx, cfg, bopts, logger); err != nil {
		return err
	}
	b, err := bus.Connect(ctx, bopts)
	if err != nil {
		return err
	}
	defer b.Close()
	readyBus.Store(b)
	pres, err := ident.claim(ctx, b, cfg, logger)
	if err != nil {
		return err
	}
	defer releasePresence(pres, logger)

	hv := &hostView{b: b, cfg: cfg, targets: targets, started: started, skew: &lease.Skew{}}
	if len(cfg.Instances) > 0 {
		hv.leases, err = instances.OpenLeases(ctx, b.JS, cfg.Instances, cfg.Host, cfg.Data, instances.LeaseOptions{TTL: cfg.Leases.TTL, Margin: cfg.Leases.Margin, Replicas: b.Replicas(), Logger: logger})
		if err != nil {
			return err
		}
	}
	hbSub, err := hv.listenHeartbeats()
	if err != nil {
		return err
	}
	defer func() { _ = hbSub.Unsubscribe() }()
	hostSvc, err := serveHostInfo(hv)
	if err != nil {
		return err
	}
	defer func() { _ = hostSvc.Stop() }()

	deps := service.Deps{Bus: b, Host: cfg.Host, DataDir: cfg.Data, Version: version, Logger: logger, Telemetry: tel,
		LeaderTTL: cfg.Leases.LeaderTTL, LeaseMargin: cfg.Leases.Margin, Auth: keys}
	if hv.leases != nil {
		deps.Instances = hv.leases
	}
	var runtimes []*service.Runtime
	for _, name := range targets {
		spec, err := specs[name](cfg)
		if err != nil {
			return err
		}
		rt, err := service.New(ctx, spec, deps)
		if err != nil {
			return err
		}
		runtimes = append(runtimes, rt)
	}

	// One life for everything below: the first service to fail ends it,
	// and the process exits non-zero (see the README, "When a service
	// fails").
	svcCtx, stopServices := context.WithCancelCause(ctx)
	defer stopServices(nil)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, rt := range runtimes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rt.Run(svcCtx); err != nil {
				stopServices(err)
			}
		}()
	}
	if hv.leases != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hv.leases.Run(svcCtx); err != nil && !errors.Is(err, context.Canceled) {
				stopServices(err)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		hv.watchSkew(svcCtx, logger)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Its host identity lost to another process, this one exits.
		if err := pres.Hold(svcCtx); err != nil {
			stopServices(err)
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		service.Heartbeat(svcCtx, b.NC, events.HostHeartbeat{
			Host: cfg.Host, Address: cfg.HTTP, Services: targets,
			Interval: events.MillisOf(cfg.HeartbeatInterval), ConfigHash: cfg.hash,
		}, cfg.HeartbeatInterval, logger)
	}()

	// Ready once every service consumes and answers.
	for _, rt := range runtimes {
		select {
		case <-rt.Ready():
		case <-svcCtx.Done():
		}
	}
	if svcCtx.Err() == nil {
		readyMu.Lock()
		notReady = ""
		readyMu.Unlock()
		logger.Info("lifeboat up",
			slog.String("services", strings.Join(targets, ",")),
			slog.String("nats", b.ClientURL()),
			slog.String("http", "http://"+srv.Addr()),
			slog.String("data", cfg.Data),
			slog.Duration("took", time.Since(started)))
	}

	<-svcCtx.Done()
	runErr := context.Cause(svcCtx)
	if errors.Is(runErr, context.Canceled) && ctx.Err() != nil {
		runErr = nil // asked to stop
		logger.Info("shutting down: finishing messages in flight and flushing outboxes")
	} else {
		logger.Error("a service failed; stopping the others and exiting", slog.String("error", runErr.Error()))
	}
	readyMu.Lock()
	notReady = "shutting down"
	readyMu.Unlock()
	wg.Wait()
	return runErr
}

// hostView is this process as its host-scoped info endpoint shows it.
type hostView struct {
	b       *bus.Bus
	cfg     Config
	targets []string
	started time.Time
	// skew is measured from every host's heartbeats.
	skew *lease.Skew
	// leases of the instances that list this host; nil without instances.
	leases *instances.Leases
}

// listenHeartbeats measures the clock skew of every host that heartbeats.
func (hv *hostView) listenHeartbeats() (*nats.Subscription, error) {
	return hv.b.NC.Subscribe(events.SubjectHeartbeats, func(m *nats.Msg) {
		var hb events.HostHeartbeat
		if json.Unmarshal(m.Data, &hb) != nil || hb.Host == "" || hb.Host == hv.cfg.Host || hb.SentAt.IsZero() {
			return
		}
		hv.skew.Observe(hb.Host, hb.SentAt, time.Now())
	})
}

// watchSkew says, every minute while it lasts, when a host's clock differs
// from this one's by more than the lease margin.
func (hv *hostView) watchSkew(ctx context.Context, logger *slog.Logger) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := hv.skew.Check(hv.cfg.Leases.Margin); err != nil {
				logger.Error("clock skew", slog.String("error", err.Error()))
			}
		}
	}
}

// serveHostInfo serves this process's own host-scoped endpoint,
// lifeboat.api.host.<host>.info, as the micro service lifeboat-host.
func serveHostInfo(hv *hostView) (micro.Service, error) {
	svc, err := micro.AddService(hv.b.NC, micro.Config{
		Name:        "lifeboat-" + api.HostService,
		Version:     service.MicroVersion(version),
		Description: "Lifeboat host: this lifeboat process, its data directory and its NATS node",
		Metadata:    map[string]string{"host": hv.cfg.Host},
	})
	if err != nil {
		return nil, fmt.Errorf("host info: micro service: %w", err)
	}
	// No queue group: only this process answers for its host.
	g := svc.AddGroup(events.HostAPISubject(api.HostService, hv.cfg.Host, ""), micro.WithGroupQueueGroupDisabled())
	err = g.AddEndpoint(api.HostInfoEndpoint, micro.HandlerFunc(func(req micro.Request) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = req.RespondJSON(hv.info(ctx))
	}))
	if err == nil {
		// `lifeboat cluster remove`: see up_membership.go.
		err = g.AddEndpoint(removePeerEndpoint, micro.HandlerFunc(hv.removePeer))
	}
	if err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("host info: endpoint: %w", err)
	}
	return svc, nil
}

// info is this process as its info endpoint answers it.
func (hv *hostView) info(ctx context.Context) api.HostInfo {
	b, cfg := hv.b, hv.cfg
	hi := api.HostInfo{
		Host:              cfg.Host,
		Version:           version,
		StartedAt:         hv.started.UTC(),
		UptimeSeconds:     time.Since(hv.started).Seconds(),
		Now:               time.Now().UTC(),
		Services:          hv.targets,
		DataDir:           cfg.Data,
		ConfigHash:        cfg.hash,
		HeartbeatInterval: events.MillisOf(cfg.HeartbeatInterval),
	}
	if abs, err := filepath.Abs(cfg.Data); err == nil {
		hi.DataDir = abs
	}
	if skews := hv.skew.Hosts(); len(skews) > 0 {
		hi.Skew = map[string]int64{}
		for h, d := range skews {
			hi.Skew[h] = d.Milliseconds()
		}
		if err := hv.skew.Check(cfg.Leases.Margin); err != nil {
			hi.SkewError = err.Error()
		}
	}
	if hv.leases != nil {
		for _, name := range cfg.Instances.OnHost(cfg.Host) {
			il := api.InstanceLease{Instance: name, Declined: hv.leases.Declined(name)}
			if rec, err := hv.leases.Holder(ctx, name); err == nil {
				il.Holder, il.Epoch = rec.Holder, rec.Epoch
			}
			hi.Instances = append(hi.Instances, il)
		}
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(cfg.Data, &fs); err != nil {
		hi.DataFreeError = err.Error()
	} else {
		hi.DataFreeBytes = uint64(fs.Bavail) * uint64(fs.Bsize)
	}
	if n, ok := b.Node(); ok {
		hi.Node = &api.NodeInfo{
			Name: n.Name, Cluster: n.Cluster, Routes: n.Routes,
			MetaLeader: n.MetaLeader, MetaCurrent: n.MetaCurrent,
			MetaPeers: n.MetaPeers, Reachable: n.Reachable,
		}
		if hi.Node.Routes == nil {
			hi.Node.Routes = []string{}
		}
	} else {
		hi.External = b.NC.ConnectedUrlRedacted()
	}
	return hi
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
