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

// RecordsRequest asks lifeboat.api.dns-updater.records for the records of
// one name, or (Name empty) of the zone.
type RecordsRequest struct {
	Name string `json:"name,omitempty"`
}

// Record is one record as the records endpoint shows it.
type Record struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
	TTL   uint32 `json:"ttl"`
	// Instance is the instance the name is declared for; empty for a
	// record lifeboat does not own (it never changes those).
	Instance string `json:"instance,omitempty"`
}

// RecordsReply is the records endpoint's answer. The embedded provider
// shows every record of the zone but the SOA; the others show the names
// lifeboat owns (or the one asked for), as their servers answer them now.
type RecordsReply struct {
	Zone     string   `json:"zone"`
	Provider string   `json:"provider"`
	Serial   uint32   `json:"serial,omitempty"`
	Records  []Record `json:"records"`
	// Errors are the names that could not be read, and why.
	Errors []string `json:"errors,omitempty"`
}

// HistoryRequest asks lifeboat.api.dns-updater.history for the newest
// changes, of one name or of all (Name empty), at most Limit (default
// 100).
type HistoryRequest struct {
	Name  string `json:"name,omitempty"`
	Limit int    `json:"limit,omitempty"`
}

// Change is one change in the history.
type Change struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
	Type string `json:"type"`
	// Old and New are the values before and after, comma separated.
	Old      string `json:"old"`
	New      string `json:"new"`
	TTL      uint32 `json:"ttl"`
	Provider string `json:"provider"`
	// Kind is activate (a failover), set (by hand) or ttl (lowered or
	// restored around a planned failover).
	Kind     string    `json:"kind,omitempty"`
	Instance string    `json:"instance,omitempty"`
	Epoch    int64     `json:"epoch,omitempty"`
	At       time.Time `json:"at"`
	// Verified says whether the authoritative servers answered the new
	// value; VerifiedAfterMs is how long that took.
	Verified        bool  `json:"verified"`
	VerifiedAfterMs int64 `json:"verified_after_ms,omitempty"`
}

// HistoryReply is the history endpoint's answer, newest first.
type HistoryReply struct {
	Changes []Change `json:"changes"`
}

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
	var r RecordsRequest
	if err := decodeRequest(req, &r); err != nil {
		service.RespondJSON(req, nil, err)
		return
	}
	reply, err := s.records(ctx, r.Name)
	service.RespondJSON(req, reply, err)
}

// records answers the records endpoint.
func (s *Service) records(ctx context.Context, name string) (RecordsReply, error) {
	if s.p == nil {
		return RecordsReply{}, service.NotFound(errNoZone)
	}
	reply := RecordsReply{Zone: s.cfg.Zone, Provider: s.p.Name(), Records: []Record{}}
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
				reply.Records = append(reply.Records, Record{Name: r.Name, Type: r.Type, Value: r.Value, TTL: uint32(r.Ttl), Instance: s.byName[r.Name]})
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
				reply.Records = append(reply.Records, Record{Name: r.Name, Type: r.Type, Value: r.Value, TTL: r.TTL, Instance: s.byName[r.Name]})
			}
		}
	}
	slices.SortFunc(reply.Records, func(a, b Record) int {
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
	var r HistoryRequest
	if err := decodeRequest(req, &r); err != nil {
		service.RespondJSON(req, nil, err)
		return
	}
	reply, err := s.history(ctx, r)
	service.RespondJSON(req, reply, err)
}

// history answers the history endpoint.
func (s *Service) history(ctx context.Context, r HistoryRequest) (HistoryReply, error) {
	switch {
	case r.Limit == 0:
		r.Limit = 100
	case r.Limit < 0 || r.Limit > 100000:
		return HistoryReply{}, service.BadRequest(fmt.Errorf("limit %d is out of range: 1 to 100000", r.Limit))
	}
	q := db.New(s.rt.DB.R)
	var rows []db.DnsHistory
	var err error
	if r.Name == "" {
		rows, err = q.ListHistory(ctx, int64(r.Limit))
	} else {
		rows, err = q.ListHistoryByName(ctx, db.ListHistoryByNameParams{Name: provider.CanonicalName(r.Name), Limit: int64(r.Limit)})
	}
	if err != nil {
		return HistoryReply{}, fmt.Errorf("history: %w", err)
	}
	reply := HistoryReply{Changes: make([]Change, 0, len(rows))}
	for _, h := range rows {
		reply.Changes = append(reply.Changes, changeOf(h))
	}
	return reply, nil
}
