// Package presence makes a host name unique (DESIGN §1 "Hosts and the
// cluster"): a second live process claiming the same host and service is
// refused, naming the other process; a process restarted from the same data
// directory, after a crash or kill -9 too, reclaims its own presence at once.
//
// The bucket: KV bucket "lifeboat-presence", History 1, the bucket's TTL
// (MaxAge) = Options.TTL (default 10 s), file storage, Options.Replicas. A
// key is "<host>.<service>"; its value is the JSON of a Record, naming the
// process (pid, machine, its --http and NATS addresses, its start time) and
// the hex SHA-256 of its data directory's nonce. The nonce itself never
// leaves the data directory.
//
// A process claims each of its keys with Create; a key that exists is
// reclaimed at once (Update on its revision) when it carries the hash of
// this data directory's nonce, and refused (*TakenError) otherwise. The
// holder renews every Options.Renew (TTL/4) with Update on the revision it
// last wrote; a key gone meanwhile (renewals stalled through a stream leader
// election) is created again, and one someone else holds now ends the hold
// (ErrLost: the process must exit). Left unrenewed, a key is gone about TTL
// after its last renewal; a clean stop deletes it.
//
// Only one process may use a data directory at a time: LockDir holds
// <data>/LOCK with flock for the process's life, so a nonce is only ever
// presented by one live process, and reclaiming by it is safe. Probe asks
// the cluster before this process's own NATS node joins it (a duplicate
// node would share the live one's server name and so its Raft identity).
package presence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"lifeboat.dev/pkg/bus"
)

// BucketName is the presence KV bucket's name.
const BucketName = "lifeboat-presence"

// DefaultTTL is how long a presence key outlives its last renewal.
const DefaultTTL = 10 * time.Second

// ErrLost: a presence key this process held is now another process's.
var ErrLost = errors.New("presence: lost")

// Options shape the presence bucket and its renewals. Zero values take the
// defaults (NewOptions fills them).
type Options struct {
	// TTL is the bucket's TTL: a key unrenewed for this long is gone
	// (default 10 s).
	TTL time.Duration
	// Renew is how often a holder renews its keys (default TTL/4).
	Renew time.Duration
	// Replicas of the bucket (default 1). An existing bucket with fewer is
	// raised; one with more keeps them.
	Replicas int
	// Now is the clock of the records' times (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

// NewOptions returns the defaults.
func NewOptions() Options {
	var o Options
	o.defaults()
	return o
}

func (o *Options) defaults() {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.Renew <= 0 {
		o.Renew = o.TTL / 4
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Record is a presence key's value: the process that holds it.
type Record struct {
	Host    string `json:"host"`
	Service string `json:"service"`
	PID     int    `json:"pid"`
	// Hostname is the machine's (os.Hostname).
	Hostname string `json:"hostname"`
	// Address is the process's --http address.
	Address string `json:"address"`
	// NATS is the client URL the process is connected through (its
	// embedded node's).
	NATS string `json:"nats"`
	// DataDir is the process's data directory.
	DataDir   string    `json:"data_dir,omitempty"`
	StartedAt time.Time `json:"started_at"`
	// RenewedAt is the send time of the write that carried it, by the
	// holder's clock.
	RenewedAt time.Time `json:"renewed_at"`
	// NonceSHA256 is the hex SHA-256 of the data directory's nonce.
	NonceSHA256 string `json:"nonce_sha256"`
}

// Identity is the process that claims presence.
type Identity struct {
	// Host is the host name claimed, and Services the services run as it
	// (each one key).
	Host     string
	Services []string
	PID      int
	Hostname string
	Address  string
	NATS     string
	DataDir  string
	// StartedAt is when the process started.
	StartedAt time.Time
	// Nonce is the data directory's (LoadNonce).
	Nonce Nonce
}

// token is what a host or service name may be: one KV key token.
var token = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// Key is the presence key of host's service; an error when either is not
// one KV key token (letters, digits, - and _).
func Key(host, service string) (string, error) {
	for _, s := range []struct{ what, v string }{{"host", host}, {"service", service}} {
		if !token.MatchString(s.v) {
			return "", fmt.Errorf("presence: %s %q is not a usable name: letters, digits, - and _ only", s.what, s.v)
		}
	}
	return host + "." + service, nil
}

// TakenError refuses a claim: another live process holds the key.
type TakenError struct {
	// Key is the presence key; empty when the evidence is a NATS node
	// named like this host (Node).
	Key string
	// Holder is the process that holds Key.
	Holder Record
	// Node is the route address at which a NATS node named like this host
	// answered, when that was the evidence.
	Node string
	Host string
	// TTL is the bucket's: how long the holder's claim outlives its last
	// renewal.
	TTL time.Duration
}

func (e *TakenError) Error() string {
	var b strings.Builder
	if e.Key == "" {
		fmt.Fprintf(&b, "presence: another live process runs as host %s: its NATS node answers under this host's name at %s (one of the cluster peers)", e.Host, e.Node)
	} else {
		h := e.Holder
		fmt.Fprintf(&b, "presence: another live process already runs %s as host %s: pid %d on machine %s, http %s, NATS %s, started %s",
			h.Service, h.Host, h.PID, orUnknown(h.Hostname), orUnknown(h.Address), orUnknown(h.NATS), h.StartedAt.UTC().Format(time.RFC3339))
		if h.DataDir != "" {
			fmt.Fprintf(&b, ", data directory %s", h.DataDir)
		}
		if !h.RenewedAt.IsZero() {
			fmt.Fprintf(&b, ", last renewed %s", h.RenewedAt.UTC().Format(time.RFC3339))
		}
		fmt.Fprintf(&b, " (key %s in KV bucket %s)", e.Key, BucketName)
	}
	ttl := e.TTL
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	fmt.Fprintf(&b, ". Another process runs as this host: give this one another --host, or stop that one; if it died, its claim lapses within %s of its last renewal", ttl)
	return b.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// Bucket is the presence KV bucket.
type Bucket struct {
	kv   jetstream.KeyValue
	opts Options
}

// Open creates the bucket or binds to it (raising its replicas when asked
// for more, setting its TTL to o.TTL), retrying while a forming cluster
// cannot take it yet (no meta leader, too few peers, timeouts) until ctx
// ends.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Bucket, error) {
	o.defaults()
	p := &Bucket{opts: o}
	state := func() string { return "a majority of the cluster's nodes must run" }
	err := bus.RetryForming(ctx, o.Logger, state, "presence bucket "+BucketName, func(ctx context.Context) error {
		kv, err := js.KeyValue(ctx, BucketName)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = js.CreateKeyValue(ctx, o.config(o.Replicas))
			if errors.Is(err, jetstream.ErrBucketExists) {
				kv, err = js.KeyValue(ctx, BucketName) // another host created it meanwhile
			}
		}
		if err != nil {
			return err
		}
		st, err := kv.Status(ctx)
		if err != nil {
			return err
		}
		s, ok := st.(*jetstream.KeyValueBucketStatus)
		if !ok {
			return fmt.Errorf("bucket status of type %T", st)
		}
		if cfg := s.Config(); cfg.Replicas < o.Replicas || cfg.TTL != o.TTL {
			if cfg.TTL != o.TTL {
				o.Logger.Warn("presence bucket's TTL changed: every host must use the same TTL",
					slog.Duration("was", cfg.TTL), slog.Duration("now", o.TTL))
			}
			if kv, err = js.UpdateKeyValue(ctx, o.config(max(cfg.Replicas, o.Replicas))); err != nil {
				return err
			}
		}
		p.kv = kv
		return nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (o Options) config(replicas int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      BucketName,
		Description: "Lifeboat presence: <host>.<service> is held by the one live process running that service as that host",
		History:     1,
		TTL:         o.TTL,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	}
}

// Presence is the keys one process holds.
type Presence struct {
	p  *Bucket
	id Identity

	mu   sync.Mutex
	revs map[string]uint64 // key → the revision this process last wrote
	keys []string          // in the order of id.Services
	svcs []string          // the service of each key
	// Reclaimed are the records this process's previous life left,
	// reclaimed by Claim (by key).
	Reclaimed map[string]Record
}

// Claim claims every service of id: a key that exists is reclaimed at once
// when it carries the hash of id's nonce; otherwise the claim is refused
// with a *TakenError, and the keys this call took are given back. Transient
// failures (a stream leader election) are retried until ctx ends.
func (p *Bucket) Claim(ctx context.Context, id Identity) (*Presence, error) {
	if id.Nonce.Hash() == "" {
		return nil, errors.New("presence: claim without a nonce")
	}
	pr := &Presence{p: p, id: id, revs: map[string]uint64{}, Reclaimed: map[string]Record{}}
	for _, s := range id.Services {
		key, err := Key(id.Host, s)
		if err != nil {
			return nil, err
		}
		if slices.Contains(pr.keys, key) {
			continue
		}
		var taken *TakenError
		err = bus.RetryForming(ctx, p.opts.Logger, func() string { return "a majority of the cluster's nodes must run" }, "presence key "+key, func(ctx context.Context) error {
			var err error
			taken, err = pr.claim(ctx, key, s)
			return err
		})
		if err == nil && taken != nil {
			err = taken
		}
		if err != nil {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			_ = pr.Release(rctx)
			cancel()
			return nil, err
		}
		pr.keys, pr.svcs = append(pr.keys, key), append(pr.svcs, s)
	}
	return pr, nil
}

// record is this process's record for service, sent now.
func (pr *Presence) record(service string) []byte {
	id := pr.id
	r := Record{Host: id.Host, Service: service, PID: id.PID, Hostname: id.Hostname, Address: id.Address, NATS: id.NATS,
		DataDir: id.DataDir, StartedAt: id.StartedAt.UTC(), RenewedAt: pr.p.opts.Now().UTC(), NonceSHA256: id.Nonce.Hash()}
	v, _ := json.Marshal(r) // strings, numbers and times
	return v
}

// claim takes key once: nil, nil when taken or reclaimed; a *TakenError
// when another process holds it; an error to retry otherwise.
//
// A read may come from this host's own node, which serves the bucket's
// reads directly and, just restarted after a kill -9, can lag behind the
// stream for seconds: an Update on the revision it gave is then refused.
// So a mismatch is retried, backing off, for up to a TTL (seen in CI:
// three quick tries were not enough).
func (pr *Presence) claim(ctx context.Context, key, service string) (*TakenError, error) {
	kv := pr.p.kv
	deadline := time.Now().Add(pr.p.opts.TTL)
	for attempt := 0; attempt == 0 || time.Now().Before(deadline); attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(min(time.Duration(attempt)*100*time.Millisecond, time.Second)):
			}
		}
		rev, err := kv.Create(ctx, key, pr.record(service))
		if err == nil {
			pr.setRev(key, rev)
			return nil, nil
		}
		createErr := err
		// The key exists, or a Create landed whose reply was lost: read it.
		rec, rev, err := get(ctx, kv, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			if errors.Is(createErr, jetstream.ErrKeyExists) {
				continue // it lapsed in between
			}
			return nil, createErr
		case err != nil:
			return nil, err
		case rec.NonceSHA256 != pr.id.Nonce.Hash():
			return &TakenError{Key: key, Holder: rec, Host: pr.id.Host, TTL: pr.p.opts.TTL}, nil
		}
		// Ours: this data directory's previous process (or this very
		// Create, landed unanswered). Reclaim it at once.
		nrev, err := kv.Update(ctx, key, pr.record(service), rev)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		pr.setRev(key, nrev)
		if rec.PID != pr.id.PID || !rec.StartedAt.Equal(pr.id.StartedAt.UTC()) {
			pr.mu.Lock()
			pr.Reclaimed[key] = rec
			pr.mu.Unlock()
			pr.p.opts.Logger.Info("presence reclaimed from this data directory's previous process",
				slog.String("key", key), slog.Int("previous_pid", rec.PID), slog.Time("previous_started_at", rec.StartedAt))
		}
		return nil, nil
	}
	return nil, fmt.Errorf("presence %s: the key keeps changing", key)
}

func (pr *Presence) setRev(key string, rev uint64) {
	pr.mu.Lock()
	pr.revs[key] = rev
	pr.mu.Unlock()
}

func (pr *Presence) rev(key string) (uint64, bool) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	r, ok := pr.revs[key]
	return r, ok
}

// get reads key's record and revision; jetstream.ErrKeyNotFound when
// nobody holds it.
func get(ctx context.Context, kv jetstream.KeyValue, key string) (Record, uint64, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyDeleted) {
		err = jetstream.ErrKeyNotFound
	}
	if err != nil {
		return Record{}, 0, err
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		// Not a presence of ours: held by someone all the same.
		r = Record{Host: key, Service: key}
	}
	return r, e.Revision(), nil
}

// Keys are the keys held, in the order of the services.
func (pr *Presence) Keys() []string { return append([]string(nil), pr.keys...) }

// Hold renews every key every Options.Renew until ctx ends (then it
// returns nil). A key gone meanwhile is created again; a key another
// process holds now ends the hold with an error wrapping ErrLost and
// naming that process: this process's identity is lost and it must exit.
// Transient failures are logged and retried at the next renewal.
func (pr *Presence) Hold(ctx context.Context) error {
	log := pr.p.opts.Logger
	t := time.NewTicker(pr.p.opts.Renew)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		var failed error
		for i, key := range pr.keys {
			rctx, cancel := context.WithTimeout(ctx, pr.p.opts.Renew)
			err := pr.renew(rctx, key, pr.svcs[i])
			cancel()
			if errors.Is(err, ErrLost) {
				return err
			}
			if err != nil && ctx.Err() == nil {
				failed = err
			}
		}
		switch {
		case failed != nil && !failing:
			failing = true
			log.Warn("presence: renewal failed; retrying", slog.String("error", failed.Error()), slog.Duration("ttl", pr.p.opts.TTL))
		case failed == nil && failing:
			failing = false
			log.Info("presence: renewed again")
		}
	}
}

// renew writes key again on its revision; re-creates it when it is gone;
// ErrLost when another process holds it.
func (pr *Presence) renew(ctx context.Context, key, service string) error {
	kv := pr.p.kv
	for range 3 {
		rev, _ := pr.rev(key)
		nrev, err := kv.Update(ctx, key, pr.record(service), rev)
		if err == nil {
			pr.setRev(key, nrev)
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("presence %s: renew: %w", key, err)
		}
		rec, r, gerr := get(ctx, kv, key)
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound):
			// Gone: renewals stalled past the TTL (an election). Nobody
			// else holds it: take it again.
			crev, cerr := kv.Create(ctx, key, pr.record(service))
			if errors.Is(cerr, jetstream.ErrKeyExists) {
				continue // someone was quicker: look again
			}
			if cerr != nil {
				return fmt.Errorf("presence %s: re-create: %w", key, cerr)
			}
			pr.setRev(key, crev)
			pr.p.opts.Logger.Warn("presence key had lapsed (renewals stalled past the TTL); claimed it again", slog.String("key", key), slog.Duration("ttl", pr.p.opts.TTL))
			return nil
		case gerr != nil:
			return fmt.Errorf("presence %s: renew: %w (then reading it: %v)", key, err, gerr)
		case rec.NonceSHA256 != pr.id.Nonce.Hash():
			te := &TakenError{Key: key, Holder: rec, Host: pr.id.Host, TTL: pr.p.opts.TTL}
			return fmt.Errorf("%w: this process's identity is now another's, so it must stop: %s", ErrLost, te.Error())
		default:
			pr.setRev(key, r) // a write of ours landed unanswered
		}
	}
	return fmt.Errorf("presence %s: renew: the key keeps changing", key)
}

// Release deletes every key still this process's, so that the host's
// next process claims it without a trace of this one.
func (pr *Presence) Release(ctx context.Context) error {
	pr.mu.Lock()
	revs := make(map[string]uint64, len(pr.revs))
	for k, r := range pr.revs {
		revs[k] = r
	}
	pr.mu.Unlock()
	var errs []error
	for key, rev := range revs {
		err := pr.p.kv.Delete(ctx, key, jetstream.LastRevision(rev))
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // not ours anymore
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("presence %s: release: %w", key, err))
			continue
		}
		pr.mu.Lock()
		delete(pr.revs, key)
		pr.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Check reads host's presence keys of services through js without taking
// any: a *TakenError when another process (not the one of nonce) holds
// one, nil when none is held or every one is nonce's (or the bucket does
// not exist yet), another error when it cannot tell.
func Check(ctx context.Context, js jetstream.JetStream, host string, services []string, nonce Nonce) error {
	kv, err := js.KeyValue(ctx, BucketName)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, s := range services {
		key, err := Key(host, s)
		if err != nil {
			return err
		}
		rec, _, err := get(ctx, kv, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if rec.NonceSHA256 != nonce.Hash() {
			te := &TakenError{Key: key, Holder: rec, Host: host}
			if st, err := kv.Status(ctx); err == nil {
				te.TTL = st.TTL()
			}
			return te
		}
	}
	return nil
}
