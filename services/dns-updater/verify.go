package dnsupdater

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/nats-io/nats.go"

	"lifeboat.dev/events/api"
	"lifeboat.dev/services/dns-updater/internal/db"
	"lifeboat.dev/services/dns-updater/provider"
)

// With the embedded provider every host serves the zone from its own
// database, and applies each change to it while it applies the event that
// asks for it. The leader's change job then verifies that every host's
// server answers the change before it emits DNSRecordUpdated:
//
//   - the hosts are those whose dns-updater answers a micro ping
//     ($SRV.PING.lifeboat-dns-updater, the host in its metadata), asked at
//     each round, with those the leader found at its last reconciliation;
//   - each host says what its own server answers, asking it over DNS
//     (its status's Answers): a listen address is often loopback or a
//     wildcard, which the leader could not reach, or would reach on
//     itself;
//   - a host answers the change when its server answers the change's
//     value, or the value of a change of the name applied after it (every
//     host applies the changes of a name in stream order);
//   - a host that no longer runs dns-updater (no responder: down, or
//     stopped) is not waited for: it applies the change when it is back,
//     before it serves again;
//   - the others are asked again, with dns.verify's backoff, until
//     dns.verify.timeout; then the change is not verified (NOT_VERIFIED,
//     naming each host and what it answered), which dns.retry retries and
//     then reports as DNSUpdateFailed.

// Answer is what a host's embedded server answers for an owned name, as
// the host itself asked it.
type Answer struct {
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	Values []string `json:"values,omitempty"`
	TTL    uint32   `json:"ttl,omitempty"`
	// Error says why there is no answer (a timeout, a response code).
	Error string `json:"error,omitempty"`
}

// ownAnswers asks this host's embedded server for every owned name.
func (s *Service) ownAnswers(ctx context.Context) []Answer {
	var out []Answer
	for _, name := range s.cfg.owned().Names() {
		typ := s.cfg.Instances[s.byName[name]].Type
		out = append(out, s.ownAnswer(ctx, name, typ))
	}
	return out
}

// ownAnswer asks this host's embedded server for name and typ, as a
// resolver would (over UDP, no recursion), requiring an authoritative
// answer.
func (s *Service) ownAnswer(ctx context.Context, name, typ string) Answer {
	a := Answer{Name: name, Type: typ}
	qtype, ok := dns.StringToType[typ]
	if !ok {
		a.Error = "unknown type " + typ
		return a
	}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	r, _, err := c.ExchangeContext(ctx, m, dialable(s.emb.Addr()))
	switch {
	case err != nil:
		a.Error = err.Error()
		return a
	case r.Rcode != dns.RcodeSuccess:
		a.Error = provider.RcodeName(r.Rcode)
		return a
	case !r.Authoritative:
		a.Error = "answer without the AA bit"
		return a
	}
	for _, rr := range r.Answer {
		if got, ok := provider.RecordOf(rr); ok && got.Name == name && got.Type == typ {
			a.Values, a.TTL = append(a.Values, got.Value), got.TTL
		}
	}
	slices.Sort(a.Values)
	return a
}

// dialable turns a listen address into one to send to: a wildcard
// (0.0.0.0, ::) is asked on loopback.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if ip.To4() != nil {
			host = "127.0.0.1"
		} else {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port)
}

// verifyHosts waits until every host running dns-updater answers change
// p, and returns how long that took.
func (s *Service) verifyHosts(ctx context.Context, q *db.Queries, p db.DnsPending) (time.Duration, error) {
	start := time.Now()
	opts := s.cfg.verifyOptions()
	d := provider.NewVerifyOptions()
	if opts.Timeout <= 0 {
		opts.Timeout = d.Timeout
	}
	if opts.FirstBackoff <= 0 {
		opts.FirstBackoff = d.FirstBackoff
	}
	if opts.MaxBackoff < opts.FirstBackoff {
		opts.MaxBackoff = max(d.MaxBackoff, opts.FirstBackoff)
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = d.QueryTimeout
	}
	want := strings.Split(p.Value, ",")[0]
	hctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	verified := map[string]bool{}
	last := map[string]string{}
	backoff := opts.FirstBackoff
	for {
		accept, err := s.acceptable(hctx, q, p, want)
		if err != nil {
			return time.Since(start), err
		}
		var waiting []string
		for _, host := range s.hosts(hctx) {
			if verified[host] {
				continue
			}
			values, err := s.hostAnswer(hctx, host, p.Name, p.Type, opts.QueryTimeout)
			switch {
			case errors.Is(err, nats.ErrNoResponders):
				// Not running dns-updater now: not waited for.
				delete(last, host)
				continue
			case err != nil:
				if hctx.Err() == nil || last[host] == "" {
					last[host] = "nothing (" + err.Error() + ")"
				}
			case slices.ContainsFunc(values, func(v string) bool { return accept[v] }):
				verified[host] = true
				continue
			case len(values) == 0:
				last[host] = "no data"
			default:
				last[host] = "[" + strings.Join(values, " ") + "]"
			}
			waiting = append(waiting, host)
		}
		if len(waiting) == 0 {
			return time.Since(start), nil
		}
		select {
		case <-hctx.Done():
			if ctx.Err() != nil {
				return time.Since(start), ctx.Err()
			}
			sort.Strings(waiting)
			var b strings.Builder
			for _, h := range waiting {
				fmt.Fprintf(&b, "; host %s answered %s", h, last[h])
			}
			return time.Since(start), &provider.Error{Op: "verify", Server: "hosts " + strings.Join(waiting, ","), Rcode: -1, Code: "NOT_VERIFIED", Retry: true,
				Err: fmt.Errorf("%w: %s %s %q at every host's embedded server within %s%s", provider.ErrNotVerified, p.Name, p.Type, want,
					time.Since(start).Round(time.Millisecond), b.String())}
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, opts.MaxBackoff)
	}
}

// acceptable returns the values a host may answer for change p: its own,
// and those of the changes of its name this host has applied after it.
func (s *Service) acceptable(ctx context.Context, q *db.Queries, p db.DnsPending, want string) (map[string]bool, error) {
	accept := map[string]bool{want: true}
	h, err := q.GetHistoryByJob(ctx, p.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return accept, nil
	}
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", p.ID, err)
	}
	later, err := q.HistoryAfter(ctx, db.HistoryAfterParams{Name: p.Name, ID: h.ID})
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", p.Name, err)
	}
	for _, l := range later {
		for _, v := range strings.Split(l.New, ",") {
			accept[v] = true
		}
	}
	return accept, nil
}

// hostAnswer returns what host's embedded server answers for name and
// typ: this host's asked directly, another's through its status. An
// error wrapping nats.ErrNoResponders says the host does not run
// dns-updater now.
func (s *Service) hostAnswer(ctx context.Context, host, name, typ string, timeout time.Duration) ([]string, error) {
	if host == s.host() {
		a := s.ownAnswer(ctx, name, typ)
		if a.Error != "" {
			return nil, errors.New(a.Error)
		}
		return a.Values, nil
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var st struct {
		Details Status `json:"details"`
	}
	if err := s.rt.CallHost(cctx, host, api.Status, nil, &st); err != nil {
		return nil, err
	}
	if st.Details.Provider != ProviderEmbedded {
		return nil, fmt.Errorf("its dns-updater has provider %q (check dns.provider in its lifeboat.yaml)", st.Details.Provider)
	}
	for _, a := range st.Details.Answers {
		if a.Name == name && a.Type == typ {
			if a.Error != "" {
				return nil, errors.New(a.Error)
			}
			return a.Values, nil
		}
	}
	return nil, fmt.Errorf("its dns-updater does not own %s (check instances.<name>.dns in its lifeboat.yaml)", name)
}

// host is this host's name.
func (s *Service) host() string {
	if s.rt == nil {
		return "test-host"
	}
	return s.rt.Deps.Host
}

// hosts returns the hosts to verify a change at: this one, those whose
// dns-updater answers a ping now, and those the last reconciliation
// found.
func (s *Service) hosts(ctx context.Context) []string {
	set := map[string]bool{s.host(): true}
	s.hostsMu.Lock()
	known := maps.Clone(s.known)
	s.hostsMu.Unlock()
	for h := range known {
		set[h] = true
	}
	if s.rt != nil {
		// As patient as refreshHosts: on a loaded host a second reply can
		// come 20 ms after the first, and a host not found here is not
		// waited for (seen in CI). Once every known host answered, the
		// ping ends at once.
		found, err := s.rt.ServiceHosts(ctx, known, 250*time.Millisecond, 2*time.Second)
		if err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "could not ask which hosts run dns-updater", slog.String("error", err.Error()))
		}
		for _, h := range found {
			set[h] = true
		}
		// Remembered, so that the next question ends as soon as these
		// have answered.
		s.hostsMu.Lock()
		for _, h := range found {
			if !s.known[h] {
				if s.known == nil {
					s.known = map[string]bool{}
				}
				s.known[h] = true
			}
		}
		s.hostsMu.Unlock()
	}
	out := make([]string, 0, len(set))
	for h := range set {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// refreshHosts remembers the hosts whose dns-updater answers a ping, with
// a patient wait.
func (s *Service) refreshHosts(ctx context.Context) error {
	if s.rt == nil {
		return nil
	}
	found, err := s.rt.ServiceHosts(ctx, nil, 250*time.Millisecond, 2*time.Second)
	if err != nil {
		return err
	}
	known := map[string]bool{}
	for _, h := range found {
		known[h] = true
	}
	s.hostsMu.Lock()
	s.known = known
	s.hostsMu.Unlock()
	return nil
}
