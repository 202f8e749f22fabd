// Package dnsupdater is the dns-updater service: when restore activates an
// instance on a new host (InstanceActivated), it points the instance's DNS
// name at the new address through a provider (lifeboat's embedded
// authoritative server, RFC 2136 dynamic updates, or Infoblox WAPI),
// verifies the change, and emits DNSRecordUpdated or DNSUpdateFailed. An
// activation whose epoch is not newer than the last applied for its
// instance is ignored, so a late or replayed event never points a name
// back at a dead host. Only names declared for instances in the config are
// ever changed. Every change is kept in a history.
//
// Across hosts (DESIGN §1): every host applies every event to its own
// database, and the service's leader makes each change once. How a change
// flows: a handler validates the event, records the change as pending and
// enqueues a change job owned by the leader, in the transaction that
// records the event as handled (handlers.go); with the embedded provider
// it also applies the change to this host's zone, so every host's server
// answers it. The leader's job sends the change to an external provider,
// or verifies that every host's embedded server answers it (apply.go,
// verify.go), outside any transaction, and emits the outcome as a leader's
// decision; every host applies the outcome to its history and epochs
// (outcome.go). A new leader runs what is still queued (leader.go).
package dnsupdater

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/miekg/dns"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/dns-updater/internal/db"
	"lifeboat.dev/services/dns-updater/provider"
	"lifeboat.dev/services/dns-updater/provider/embedded"
	"lifeboat.dev/services/dns-updater/provider/infoblox"
	"lifeboat.dev/services/dns-updater/provider/rfc2136"
	lbsql "lifeboat.dev/sql"
)

// Name is the service's name on the bus and on disk.
const Name = events.ServiceDNSUpdater

// Service is the dns-updater.
type Service struct {
	cfg    Config
	rt     *service.Runtime
	db     *store.DB // rt.DB
	log    *slog.Logger
	p      provider.Provider // nil when no zone is configured
	emb    *embedded.Server  // set when p is the embedded server
	byName map[string]string // owned name → instance
	// now is the service's clock (service.Deps.Now); retryIn the work
	// queue's backoff before a failed job's next attempt.
	now     func() time.Time
	retryIn func(attempt int) time.Duration
	// leading returns the leader's epoch while this host leads
	// (service.Runtime.Leading).
	leading func() (uint64, bool)
	// source names this process as the sender of its events.
	source string

	// known are the hosts whose dns-updater answered the leader's last
	// patient ping (refreshHosts).
	hostsMu sync.Mutex
	known   map[string]bool

	// leaderTTL is the leader's lease (0: the runtime's default, 20 s).
	leaderTTL time.Duration

	closeOnce sync.Once

	// afterSet, when set (tests), runs after a change is made (sent to
	// the external provider; applied by every host to its embedded zone)
	// and before it is verified and recorded; an error stands for a crash
	// at that point.
	afterSet func(ctx context.Context) error
}

// reconcileEvery is how often the leader reconciles unasked.
const reconcileEvery = 10 * time.Second

// Spec describes the service to the runtime, configured by cfg (the dns
// section of lifeboat.yaml). cfg is validated here too, with keys named
// under "dns".
func Spec(cfg Config) (service.Spec, error) {
	cfg.Instances = maps.Clone(cfg.Instances)
	if err := cfg.Validate(nil, "dns"); err != nil {
		return service.Spec{}, err
	}
	return newService(cfg).spec()
}

func newService(cfg Config) *Service {
	s := &Service{cfg: cfg, byName: map[string]string{}, log: slog.Default(), now: time.Now, source: "lifeboat/test-host/" + Name}
	s.retryIn = s.backoff
	// Without a runtime (tests that call the worker) this host leads,
	// in no epoch.
	s.leading = func() (uint64, bool) { return 0, true }
	for inst, ic := range cfg.Instances {
		s.byName[ic.Name] = inst
	}
	return s
}

func (s *Service) spec() (service.Spec, error) {
	migrations, err := lbsql.Migrations(Name)
	if err != nil {
		return service.Spec{}, err
	}
	return service.Spec{
		Name:        Name,
		Description: "Lifeboat dns-updater: points an activated instance's DNS name at its new host and verifies the change",
		Migrations:  migrations,
		// What follows from the events alike on every host. dns_zone (the
		// SOA this host serves, its serial moved by this host's loads of
		// the zone file) and dns_jobs (this host's progress on its copy
		// of each change job) are this host's own.
		Replicated: []string{"dns_records", "dns_history", "dns_epochs", "dns_seen", "dns_lowered", "dns_pending"},
		Leader:     &service.Leader{TTL: s.leaderTTL, Every: reconcileEvery, Reconcile: s.reconcile},
		Init:       s.init,
		Run:        s.run,
		Subscriptions: []service.Subscription{
			service.On(s.handleInstanceActivated),
			service.On(s.handleDNSSet),
			service.On(s.handleFailoverStarted),
			service.On(s.handleFailoverCompleted),
			service.On(s.handleRestoreFailed),
			service.On(s.handleDNSRecordUpdated),
			service.On(s.handleDNSUpdateFailed),
		},
		Work: []service.WorkKind{service.Work(workChange, s.applyChange).WithBackoff(s.backoff)},
		Endpoints: []service.Endpoint{
			{Name: "records", Handler: s.recordsEndpoint},
			{Name: "history", Handler: s.historyEndpoint},
		},
		Status: s.status,
	}, nil
}

// init opens the provider. The embedded server starts serving here, so a
// port in use stops the service at start with the key to change.
func (s *Service) init(ctx context.Context, rt *service.Runtime) error {
	s.rt, s.db = rt, rt.DB
	s.log = rt.Logger
	s.leading, s.source = rt.Leading, rt.Source
	if rt.Deps.Now != nil {
		s.now = rt.Deps.Now
	}
	// A change that failed for a reason that may pass is retried by the
	// work queue after dns.retry's backoff (the kind's, see spec), unless
	// the process gave every queue its own.
	if rt.Deps.WorkBackoff != nil {
		s.retryIn = rt.Deps.WorkBackoff
	}
	if !s.cfg.Enabled() {
		s.log.InfoContext(ctx, "no DNS zone configured (dns.zone): dns-updater changes nothing")
		return nil
	}
	owned := s.cfg.owned()
	switch s.cfg.Provider {
	case ProviderEmbedded:
		opts := embedded.NewOptions(s.cfg.Zone)
		opts.Addr, opts.ZoneFile, opts.Owned, opts.Logger = s.cfg.Embedded.Listen, s.cfg.Embedded.ZoneFile, owned, s.log
		// The handlers apply changes to the zone in their transactions
		// (Server.Apply); Open writes the zone file's records in one of
		// its own, before any is consumed.
		srv, err := embedded.Open(ctx, rt.DB, opts)
		if err != nil {
			return fmt.Errorf("dns.embedded: %w", err)
		}
		if err := srv.Start(ctx); err != nil {
			return fmt.Errorf("dns: %w", err)
		}
		s.p, s.emb = srv, srv
		// Stop serving when the service stops.
		context.AfterFunc(ctx, s.closeProvider)
		if err := s.zoneQueued(ctx); err != nil {
			return fmt.Errorf("dns: %w", err)
		}
	case ProviderRFC2136:
		r := s.cfg.RFC2136
		var key rfc2136.Key
		if r.KeyFile != "" {
			k, err := rfc2136.ReadKeyFile(r.KeyFile)
			if err != nil {
				return fmt.Errorf("dns.rfc2136.key_file: %w", err)
			}
			key = k
		}
		opts := rfc2136.NewOptions(r.Server, s.cfg.Zone, key)
		opts.Owned, opts.Authoritative, opts.Timeout = owned, r.Authoritative, r.Timeout
		p, err := rfc2136.New(opts)
		if err != nil {
			return fmt.Errorf("dns.rfc2136: %w", err)
		}
		s.p = p
	case ProviderInfoblox:
		ib := s.cfg.Infoblox
		opts := infoblox.NewOptions(ib.URL, s.cfg.Zone)
		user, pass, err := infoblox.ReadCredentials(ib.CredentialsFile)
		if err != nil {
			return fmt.Errorf("dns.infoblox.credentials_file: %w", err)
		}
		opts.Username, opts.Password = user, pass
		opts.Version, opts.View, opts.CAFile, opts.Timeout = ib.Version, ib.View, ib.CAFile, ib.Timeout
		opts.Owned, opts.Authoritative = owned, ib.Authoritative
		p, err := infoblox.New(opts)
		if err != nil {
			return fmt.Errorf("dns.infoblox: %w", err)
		}
		s.p = p
	}
	s.log = s.log.With(slog.String("provider", s.p.Name()), slog.String("zone", s.cfg.Zone))
	s.log.InfoContext(ctx, "dns-updater ready", slog.Int("instances", len(s.cfg.Instances)), slog.Any("authoritative", s.p.Authoritative()))
	return nil
}

func (s *Service) closeProvider() {
	s.closeOnce.Do(func() {
		if s.emb != nil {
			if err := s.emb.Close(); err != nil {
				s.log.Warn("embedded dns server did not stop cleanly", slog.String("error", err.Error()))
			}
		}
	})
}

// Status is the service's own part of its status reply.
type Status struct {
	// Zone is the zone changed; empty when none is configured.
	Zone string `json:"zone"`
	// Provider is embedded, rfc2136 or infoblox.
	Provider string `json:"provider,omitempty"`
	// Listen is the embedded server's address.
	Listen string `json:"listen,omitempty"`
	// Authoritative are the servers changes are verified against.
	Authoritative []string `json:"authoritative,omitempty"`
	// Serial is the zone's SOA serial as its first authoritative server
	// answers it (0 when it could not be asked).
	Serial      uint32 `json:"serial,omitempty"`
	SerialError string `json:"serial_error,omitempty"`
	// Instances maps each instance to its DNS name.
	Instances map[string]string `json:"instances,omitempty"`
	// Pending is how many changes wait for their outcome (queued, in
	// retry, being made or verified): those the events asked for, and the
	// sets by hand this host accepted as the leader.
	Pending int `json:"pending"`
	// Lowered lists the instances whose TTL is lowered for a failover.
	Lowered []string `json:"lowered,omitempty"`
	// LastChange is the newest change in the history.
	LastChange *Change `json:"last_change,omitempty"`
	// Answers are what this host's embedded server answers for each
	// owned name, asked over DNS by this host: what the leader verifies
	// a change against on every host (verify.go).
	Answers []Answer `json:"answers,omitempty"`
}

func (s *Service) status(ctx context.Context) (any, error) {
	st := Status{Zone: s.cfg.Zone}
	if s.p == nil {
		return st, nil
	}
	st.Provider = s.p.Name()
	st.Authoritative = s.p.Authoritative()
	if s.emb != nil {
		st.Listen = s.emb.Addr()
		st.Serial = s.emb.Serial()
		st.Answers = s.ownAnswers(ctx)
	} else if serial, err := querySerial(ctx, st.Authoritative[0], s.cfg.Zone, time.Second); err != nil {
		st.SerialError = err.Error()
	} else {
		st.Serial = serial
	}
	st.Instances = map[string]string{}
	for inst, ic := range s.cfg.Instances {
		st.Instances[inst] = ic.Name
	}
	q := db.New(s.db.R)
	pending, err := q.CountPending(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	sets, err := q.CountOwnSets(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	st.Pending = int(pending + sets)
	lowered, err := q.ListLowered(ctx)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	for _, l := range lowered {
		st.Lowered = append(st.Lowered, l.Instance)
	}
	last, err := q.ListHistory(ctx, 1)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	if len(last) == 1 {
		c := changeOf(last[0])
		st.LastChange = &c
	}
	return st, nil
}

// lastApplied returns the epoch last applied for instance, 0 when none.
func lastApplied(ctx context.Context, q *db.Queries, instance string) (int64, error) {
	e, err := q.GetEpoch(ctx, instance)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return e.Epoch, err
}

// querySerial asks server for zone's SOA, without recursion, and returns
// its serial.
func querySerial(ctx context.Context, server, zone string, timeout time.Duration) (uint32, error) {
	m := new(dns.Msg)
	m.SetQuestion(zone, dns.TypeSOA)
	m.RecursionDesired = false
	c := &dns.Client{Net: "udp", Timeout: timeout}
	r, _, err := c.ExchangeContext(ctx, m, server)
	if err != nil {
		return 0, fmt.Errorf("SOA of %s at %s: %w", zone, server, err)
	}
	if r.Rcode != dns.RcodeSuccess {
		return 0, fmt.Errorf("SOA of %s at %s: %s", zone, server, provider.RcodeName(r.Rcode))
	}
	for _, rr := range r.Answer {
		if soa, ok := rr.(*dns.SOA); ok {
			return soa.Serial, nil
		}
	}
	return 0, fmt.Errorf("SOA of %s at %s: no SOA in the answer", zone, server)
}
