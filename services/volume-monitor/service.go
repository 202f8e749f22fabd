// Package volumemonitor is the volume-monitor service: it turns host
// heartbeats into HostDown and HostUp, and volume samples into near-full and
// overflow events (DESIGN §3).
//
// Built so far: the host table. Every heartbeat updates a host's last_seen,
// and HostDown/HostUp — from any outside publisher, until this service's own
// detection arrives with its issue — set the host's state. Status and the
// `hosts` endpoint show them.
package volumemonitor

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go/micro"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/volume-monitor/internal/db"
	lbsql "lifeboat.dev/sql"
)

// Name is the service's name on the bus and on disk.
const Name = events.ServiceVolumeMonitor

// Service is the volume-monitor.
type Service struct {
	rt        *service.Runtime
	heartbeat events.Type
}

// Spec describes the service to the runtime.
func Spec() (service.Spec, error) {
	migrations, err := lbsql.Migrations(Name)
	if err != nil {
		return service.Spec{}, err
	}
	s := &Service{}
	return service.Spec{
		Name:        Name,
		Description: "Lifeboat volume-monitor (partial): records heartbeats and HostDown/HostUp in its host table (hosts endpoint); detecting dead hosts and full volumes comes with its issue",
		Migrations:  migrations,
		// host_states are what HostDown and HostUp say, alike on every
		// host; heartbeats are what this host heard.
		Replicated: []string{"host_states"},
		Init:       s.init,
		Subscriptions: []service.Subscription{
			service.On(s.handleHostDown),
			service.On(s.handleHostUp),
		},
		Endpoints: []service.Endpoint{{Name: "hosts", Handler: s.hostsEndpoint}},
		Status:    s.status,
	}, nil
}

func (s *Service) init(_ context.Context, rt *service.Runtime) error {
	s.rt = rt
	t, ok := events.BySubject(events.HeartbeatSubject("any"))
	if !ok {
		return fmt.Errorf("heartbeats: %s is not in the events catalog", events.HeartbeatSubject("any"))
	}
	s.heartbeat = t
	return rt.Listen(events.HeartbeatSubject("*"), s.recordHeartbeat)
}

func (s *Service) handleHostDown(ctx context.Context, tx *store.Tx, ev *events.HostDown, m service.Delivery) error {
	return setState(ctx, tx, ev.Host, "down", ev.Reason, ev.DetectedBy, ev.LastSeen, m.Timestamp)
}

func (s *Service) handleHostUp(ctx context.Context, tx *store.Tx, ev *events.HostUp, m service.Delivery) error {
	return setState(ctx, tx, ev.Host, "up", ev.Reason, ev.DetectedBy, ev.LastSeen, m.Timestamp)
}

// setState records host's state as an event says; since is the event's
// time in the stream, the same on every host that applies it.
func setState(ctx context.Context, tx *store.Tx, host, state, reason, by string, lastSeen, since time.Time) error {
	ls := sql.NullInt64{}
	if !lastSeen.IsZero() {
		ls = sql.NullInt64{Int64: lastSeen.UnixMilli(), Valid: true}
	}
	return db.New(tx).HostSetState(ctx, db.HostSetStateParams{
		Host: host, State: state, StateSince: since.UnixMilli(), Reason: reason, DetectedBy: by, LastSeen: ls,
	})
}

// recordHeartbeat records a host's heartbeat (core NATS, not the events
// stream: liveness at a high rate stays off the log).
func (s *Service) recordHeartbeat(ctx context.Context, m service.Delivery) error {
	v, err := events.Decode(s.heartbeat, m.Body)
	if err != nil {
		return fmt.Errorf("malformed heartbeat ignored: %w", err)
	}
	hb, ok := v.(*events.HostHeartbeat)
	if !ok {
		return fmt.Errorf("heartbeat decoded as %T, not a HostHeartbeat", v)
	}
	services, err := json.Marshal(hb.Services)
	if err != nil {
		return fmt.Errorf("heartbeat of %s: %w", hb.Host, err)
	}
	err = s.rt.DB.Update(ctx, func(tx *store.Tx) error {
		return db.New(tx).HeartbeatSeen(ctx, db.HeartbeatSeenParams{
			Host: hb.Host, Address: hb.Address, Services: string(services),
			FirstSeen: time.Now().UnixMilli(), LastSeen: hb.SentAt.UnixMilli(),
		})
	})
	if err != nil {
		return fmt.Errorf("heartbeat of %s not recorded: %w", hb.Host, err)
	}
	return nil
}

// Host is one host as the API shows it.
type Host struct {
	Host       string     `json:"host"`
	Address    string     `json:"address,omitempty"`
	Services   []string   `json:"services"`
	LastSeen   *time.Time `json:"last_seen,omitempty"`
	State      string     `json:"state"`
	StateSince time.Time  `json:"state_since"`
	Reason     string     `json:"reason,omitempty"`
	DetectedBy string     `json:"detected_by,omitempty"`
}

// Hosts lists every known host: its state as the last HostDown or HostUp
// said (replicated), and the heartbeats this host heard from it (its own).
// A host only heard from is up since its first heartbeat.
func (s *Service) Hosts(ctx context.Context) ([]Host, error) {
	q := db.New(s.rt.DB.R)
	states, err := q.ListHostStates(ctx)
	if err != nil {
		return nil, err
	}
	beats, err := q.ListHeartbeats(ctx)
	if err != nil {
		return nil, err
	}
	byHost := map[string]*Host{}
	host := func(name string) *Host {
		if h, ok := byHost[name]; ok {
			return h
		}
		h := &Host{Host: name, State: "up", Services: []string{}}
		byHost[name] = h
		return h
	}
	seen := func(h *Host, ms int64) {
		if ls := time.UnixMilli(ms).UTC(); h.LastSeen == nil || ls.After(*h.LastSeen) {
			h.LastSeen = &ls
		}
	}
	for _, b := range beats {
		h := host(b.Host)
		h.Address, h.StateSince = b.Address, time.UnixMilli(b.FirstSeen).UTC()
		if err := json.Unmarshal([]byte(b.Services), &h.Services); err != nil {
			return nil, fmt.Errorf("host %s: stored services unreadable: %w", b.Host, err)
		}
		seen(h, b.LastSeen)
	}
	for _, st := range states {
		h := host(st.Host)
		h.State, h.StateSince, h.Reason, h.DetectedBy = st.State, time.UnixMilli(st.StateSince).UTC(), st.Reason, st.DetectedBy
		if st.LastSeen.Valid {
			seen(h, st.LastSeen.Int64)
		}
	}
	out := make([]Host, 0, len(byHost))
	for _, name := range slices.Sorted(maps.Keys(byHost)) {
		out = append(out, *byHost[name])
	}
	return out, nil
}

func (s *Service) hostsEndpoint(req micro.Request) {
	hosts, err := s.Hosts(s.rt.Context())
	service.RespondJSON(req, hosts, err)
}

func (s *Service) status(ctx context.Context) (any, error) {
	hosts, err := s.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	st := map[string]int{"up": 0, "down": 0}
	for _, h := range hosts {
		st[h.State]++
	}
	return map[string]any{"hosts_up": st["up"], "hosts_down": st["down"]}, nil
}
