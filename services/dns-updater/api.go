package dnsupdater

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/micro"

	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/services/dns-updater/internal/db"
	"lifeboat.dev/services/dns-updater/provider"
)

// The API is read-only: records and history. Changing a name by hand goes
// through the dns-updater.set command (lifeboat dns set publishes it), not
// an endpoint, so that a manual change takes the same durable path as a
// failover's: queued exactly once through the inbox, applied in order with
// the others, retried across restarts, and answered by DNSRecordUpdated or
// DNSUpdateFailed on the event stream for everyone to see.

// The endpoints' names and their request and reply types are the
// contract's (lifeboat.dev/events/api): api.DNSRecords takes
// api.DNSRecordsRequest and answers api.DNSRecordsReply, api.DNSHistory
// takes api.DNSHistoryRequest and answers api.DNSHistoryReply. Each
// answers once this host has applied the events its consumer was given
// (caughtUp), so an operator who saw an outcome on the stream sees it
// here too.

// Change is one change in the history, as the API and the status show it.
type Change = api.DNSChange

func changeOf(h db.DnsHistory) Change {
	c := Change{ID: h.ID, Name: h.Name, Type: h.Type, Old: h.Old, New: h.New, TTL: uint32(h.Ttl), Provider: h.Provider,
		Kind: h.Kind, Instance: h.Instance, Epoch: h.Epoch, At: time.UnixMilli(h.At).UTC(), Verified: h.VerifiedAfterMs >= 0}
	if c.Verified {
		c.VerifiedAfterMs = h.VerifiedAfterMs
	}
	return c
}

// decodeRequest reads a JSON request; an empty body is the zero request.
func decodeRequest(req micro.Request, v any) error {
	if len(req.Data()) == 0 {
		return nil
	}
	if err := json.Unmarshal(req.Data(), v); err != nil {
		return service.BadRequest(fmt.Errorf("request is not the JSON expected: %w", err))
	}
	return nil
}

func (s *Service) recordsEndpoint(req micro.Request) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var r api.DNSRecordsRequest
	if err := decodeRequest(req, &r); err != nil {
		service.RespondJSON(req, nil, err)
		return
	}
	reply, err := s.records(ctx, r.Name)
	service.RespondJSON(req, reply, err)
}

// caughtUp waits, at most wait, until this host has applied the outcomes
// it decided (as the leader) and every event its consumer has been given,
// so that an answer reflects an outcome its asker has already seen (lifeboat
// dns set, then dns show). It answers anyway when the wait ends.
func (s *Service) caughtUp(ctx context.Context, wait time.Duration) {
	if s.rt == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		decided, err := db.New(s.db.R).CountDecided(ctx, s.now().Add(-2*setExpiry).UnixMilli())
		if err != nil {
			return
		}
		backlog, err := s.rt.EventsBacklog(ctx)
		if err != nil || decided == 0 && backlog == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// records answers the records endpoint.
func (s *Service) records(ctx context.Context, name string) (api.DNSRecordsReply, error) {
	if s.p == nil {
		return api.DNSRecordsReply{}, service.NotFound(errNoZone)
	}
	s.caughtUp(ctx, 2*time.Second)
	reply := api.DNSRecordsReply{Zone: s.cfg.Zone, Provider: s.p.Name(), Records: []api.DNSRecord{}}
	if name != "" {
		name = provider.CanonicalName(name)
		if !provider.InZone(name, s.cfg.Zone) {
			return reply, service.BadRequest(fmt.Errorf("%w: %q is not in zone %q", provider.ErrOutsideZone, name, s.cfg.Zone))
		}
	}
	if s.emb != nil {
		reply.Serial = s.emb.Serial()
		rows, err := db.New(s.rt.DB.R).ListRecords(ctx, s.cfg.Zone)
		if err != nil {
			return reply, fmt.Errorf("records: %w", err)
		}
		for _, r := range rows {
			if name == "" || r.Name == name {
				reply.Records = append(reply.Records, api.DNSRecord{Name: r.Name, Type: r.Type, Value: r.Value, TTL: uint32(r.Ttl), Instance: s.byName[r.Name]})
			}
		}
	} else {
		// The serial the zone's first authoritative server answers now:
		// after a change it shows the server took it.
		if serial, err := querySerial(ctx, s.p.Authoritative()[0], s.cfg.Zone, 2*time.Second); err == nil {
			reply.Serial = serial
		} else {
			reply.Errors = append(reply.Errors, err.Error())
		}
		// A remote zone cannot be listed without a zone transfer; ask
		// for the owned names, or the one asked for.
		type ask struct{ name, typ string }
		var asks []ask
		for _, n := range s.cfg.owned().Names() {
			if name == "" || n == name {
				asks = append(asks, ask{n, s.cfg.Instances[s.byName[n]].Type})
			}
		}
		if name != "" && len(asks) == 0 {
			asks = []ask{{name, "A"}, {name, "AAAA"}}
		}
		for _, a := range asks {
			rs, err := s.p.Get(ctx, a.name, a.typ)
			if errors.Is(err, provider.ErrNotFound) {
				continue
			}
			if err != nil {
				reply.Errors = append(reply.Errors, err.Error())
				continue
			}
			for _, r := range rs {
				reply.Records = append(reply.Records, api.DNSRecord{Name: r.Name, Type: r.Type, Value: r.Value, TTL: r.TTL, Instance: s.byName[r.Name]})
			}
		}
	}
	slices.SortFunc(reply.Records, func(a, b api.DNSRecord) int {
		return strings.Compare(a.Name+" "+a.Type+" "+a.Value, b.Name+" "+b.Type+" "+b.Value)
	})
	if name != "" && len(reply.Records) == 0 && len(reply.Errors) == 0 {
		return reply, service.NotFound(fmt.Errorf("%s has no records in zone %s", name, s.cfg.Zone))
	}
	return reply, nil
}

func (s *Service) historyEndpoint(req micro.Request) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var r api.DNSHistoryRequest
	if err := decodeRequest(req, &r); err != nil {
		service.RespondJSON(req, nil, err)
		return
	}
	reply, err := s.history(ctx, r)
	service.RespondJSON(req, reply, err)
}

// history answers the history endpoint.
func (s *Service) history(ctx context.Context, r api.DNSHistoryRequest) (api.DNSHistoryReply, error) {
	switch {
	case r.Limit == 0:
		r.Limit = 100
	case r.Limit < 0 || r.Limit > 100000:
		return api.DNSHistoryReply{}, service.BadRequest(fmt.Errorf("limit %d is out of range: 1 to 100000", r.Limit))
	}
	s.caughtUp(ctx, 2*time.Second)
	q := db.New(s.rt.DB.R)
	var rows []db.DnsHistory
	var err error
	if r.Name == "" {
		rows, err = q.ListHistory(ctx, int64(r.Limit))
	} else {
		rows, err = q.ListHistoryByName(ctx, db.ListHistoryByNameParams{Name: provider.CanonicalName(r.Name), Limit: int64(r.Limit)})
	}
	if err != nil {
		return api.DNSHistoryReply{}, fmt.Errorf("history: %w", err)
	}
	reply := api.DNSHistoryReply{Changes: make([]Change, 0, len(rows))}
	for _, h := range rows {
		reply.Changes = append(reply.Changes, changeOf(h))
	}
	return reply, nil
}
