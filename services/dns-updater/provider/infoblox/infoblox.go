// Package infoblox changes records through the Infoblox WAPI, the REST API
// of an Infoblox NIOS grid: it searches record:a (record:aaaa,
// record:cname, record:txt) by name and DNS view, updates a record in place
// through its _ref, creates it when absent, and deletes what a replaced set
// no longer holds. It authenticates with HTTP basic auth and verifies the
// grid's TLS certificate (against the system's roots and, optionally, a CA
// file).
//
// Nobody can run Infoblox in this project's tests: the package is tested
// against infobloxfake, a fake that follows the published WAPI shapes, not
// against a grid.
package infoblox

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"lifeboat.dev/services/dns-updater/provider"
)

// Options configure a Provider.
type Options struct {
	// URL is the grid master's base URL, e.g. "https://gm.example.com".
	URL string
	// Version is the WAPI version, e.g. "2.12" (requests go to
	// /wapi/v2.12/).
	Version string
	// View is the DNS view the zone lives in.
	View string
	// Zone is the zone changed, e.g. "example.com.".
	Zone string
	// Username and Password authenticate (HTTP basic auth); see
	// ReadCredentials.
	Username, Password string
	// CAFile is a PEM file of certificates trusted besides the system's,
	// for a grid with a private CA. TLS verification is never turned off.
	CAFile string
	// Owned are the names Set may change.
	Owned provider.Owned
	// Authoritative are the grid members serving the zone (host:port),
	// which changes are verified against.
	Authoritative []string
	// Timeout bounds one HTTP request.
	Timeout time.Duration
}

// NewOptions returns the defaults for zone at the grid master url: WAPI
// 2.12, view "default", 30 s per request.
func NewOptions(url, zone string) Options {
	return Options{URL: url, Zone: zone, Version: "2.12", View: "default", Timeout: 30 * time.Second}
}

// object is how WAPI names a record type and its value field.
type object struct{ typ, field string }

var objects = map[string]object{
	"A":     {"record:a", "ipv4addr"},
	"AAAA":  {"record:aaaa", "ipv6addr"},
	"CNAME": {"record:cname", "canonical"},
	"TXT":   {"record:txt", "text"},
}

// Provider changes one zone in one view of one grid.
type Provider struct {
	opts   Options
	zone   string
	base   string // .../wapi/vX/
	client *http.Client
}

var _ provider.Provider = (*Provider)(nil)

// New checks opts, loads the CA file, and returns the provider. Nothing is
// sent until Get or Set.
func New(opts Options) (*Provider, error) {
	zone, err := provider.CheckZone(opts.Zone)
	if err != nil {
		return nil, fmt.Errorf("infoblox: %w", err)
	}
	u, err := url.Parse(opts.URL)
	if err != nil || u.Host == "" || u.Scheme != "https" {
		// Plain http would send the WAPI password in the clear to a
		// server nobody verified: TLS is not optional.
		return nil, fmt.Errorf("infoblox: url %q is not an https:// URL of the grid master (http is refused: the password would travel unencrypted and the grid unverified)", opts.URL)
	}
	d := NewOptions(opts.URL, opts.Zone)
	if opts.Version == "" {
		opts.Version = d.Version
	}
	opts.Version = strings.TrimPrefix(opts.Version, "v")
	if opts.View == "" {
		opts.View = d.View
	}
	if opts.Timeout <= 0 {
		opts.Timeout = d.Timeout
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("infoblox: ca file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("infoblox: ca file %s holds no PEM certificate", opts.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	return &Provider{
		opts:   opts,
		zone:   zone,
		base:   strings.TrimRight(opts.URL, "/") + "/wapi/v" + opts.Version + "/",
		client: &http.Client{Transport: tr, Timeout: opts.Timeout},
	}, nil
}

// ReadCredentials reads the WAPI user and password from path: one line
// "username:password" (the password may hold colons; # lines are
// comments). Keep the file readable by lifeboat alone.
func ReadCredentials(path string) (username, password string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("infoblox credentials: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, pass, ok := strings.Cut(line, ":")
		if !ok || user == "" || pass == "" {
			return "", "", fmt.Errorf("infoblox credentials %s: expected one line username:password", path)
		}
		return user, pass, nil
	}
	return "", "", fmt.Errorf("infoblox credentials %s: empty (write username:password)", path)
}

// Name returns "infoblox".
func (p *Provider) Name() string { return "infoblox" }

// Authoritative returns the grid members to verify against.
func (p *Provider) Authoritative() []string { return slices.Clone(p.opts.Authoritative) }

// wapiRecord is a record object as WAPI returns it.
type wapiRecord struct {
	ref    string
	value  string
	ttl    uint32
	useTTL bool
}

// Get searches the records of name and type in the view. A record that
// inherits the zone's TTL (use_ttl false) has TTL 0.
func (p *Provider) Get(ctx context.Context, name, rtype string) ([]provider.Record, error) {
	name, rtype = provider.CanonicalName(name), strings.ToUpper(rtype)
	if !provider.InZone(name, p.zone) {
		return nil, fmt.Errorf("infoblox: get: %w: %q is not in zone %q", provider.ErrOutsideZone, name, p.zone)
	}
	obj, ok := objects[rtype]
	if !ok {
		return nil, fmt.Errorf("infoblox: get: %w: %q", provider.ErrUnsupportedType, rtype)
	}
	found, err := p.search(ctx, obj, name)
	if err != nil {
		return nil, fmt.Errorf("infoblox: get %s %s: %w", name, rtype, err)
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("infoblox: get %s %s: %w", name, rtype, provider.ErrNotFound)
	}
	out := make([]provider.Record, len(found))
	for i, w := range found {
		out[i] = provider.Record{Name: name, Type: rtype, Value: w.value, TTL: w.ttl}
	}
	slices.SortFunc(out, func(a, b provider.Record) int { return strings.Compare(a.Value, b.Value) })
	return out, nil
}

// Set makes the view's records of rs's name and type be rs: records whose
// value stays are kept (their TTL updated when it changed), others are
// updated in place to a new value, created when there are more new values
// than old records, and deleted when there are fewer. WAPI has no
// transaction across these calls; each is done in that order, so the name
// always resolves to something, and a failure part way leaves old and new
// values, never none.
func (p *Provider) Set(ctx context.Context, rs []provider.Record) error {
	rs, err := provider.ValidateSet(p.zone, p.opts.Owned, rs)
	if err != nil {
		return fmt.Errorf("infoblox: set: %w", err)
	}
	name, rtype, ttl := rs[0].Name, rs[0].Type, rs[0].TTL
	obj := objects[rtype]
	existing, err := p.search(ctx, obj, name)
	if err != nil {
		return fmt.Errorf("infoblox: set %s %s: %w", name, rtype, err)
	}
	var missing []string
	var spare []wapiRecord
	want := map[string]bool{}
	for _, r := range rs {
		want[r.Value] = true
	}
	have := map[string]bool{}
	for _, w := range existing {
		switch {
		case want[w.value] && !have[w.value]:
			have[w.value] = true
			if w.ttl != ttl || !w.useTTL {
				if err := p.write(ctx, http.MethodPut, w.ref, map[string]any{"ttl": ttl, "use_ttl": true}); err != nil {
					return fmt.Errorf("infoblox: set %s %s: %w", name, rtype, err)
				}
			}
		default:
			spare = append(spare, w)
		}
	}
	for _, r := range rs {
		if !have[r.Value] {
			missing = append(missing, r.Value)
		}
	}
	for len(missing) > 0 && len(spare) > 0 {
		if err := p.write(ctx, http.MethodPut, spare[0].ref, map[string]any{obj.field: wapiValue(rtype, missing[0]), "ttl": ttl, "use_ttl": true}); err != nil {
			return fmt.Errorf("infoblox: set %s %s: %w", name, rtype, err)
		}
		missing, spare = missing[1:], spare[1:]
	}
	for _, v := range missing {
		body := map[string]any{"name": strings.TrimSuffix(name, "."), "view": p.opts.View, obj.field: wapiValue(rtype, v), "ttl": ttl, "use_ttl": true}
		if err := p.write(ctx, http.MethodPost, obj.typ, body); err != nil {
			return fmt.Errorf("infoblox: set %s %s: %w", name, rtype, err)
		}
	}
	for _, w := range spare {
		if err := p.write(ctx, http.MethodDelete, w.ref, nil); err != nil {
			return fmt.Errorf("infoblox: set %s %s: %w", name, rtype, err)
		}
	}
	return nil
}

// wapiValue is v as WAPI writes it: names without the trailing dot.
func wapiValue(rtype, v string) string {
	if rtype == "CNAME" {
		return strings.TrimSuffix(v, ".")
	}
	return v
}

// search returns the records of obj named name in the view.
func (p *Provider) search(ctx context.Context, obj object, name string) ([]wapiRecord, error) {
	q := url.Values{"name": {strings.TrimSuffix(name, ".")}, "view": {p.opts.View}, "_return_fields+": {"ttl,use_ttl"}}
	body, err := p.do(ctx, "search", http.MethodGet, obj.typ+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	var raw []map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, &provider.Error{Op: "search", Server: p.opts.URL, Rcode: -1, Code: "bad response", Err: fmt.Errorf("not a WAPI result list: %w", err)}
	}
	out := make([]wapiRecord, 0, len(raw))
	for _, m := range raw {
		ref, _ := m["_ref"].(string)
		v, _ := m[obj.field].(string)
		if ref == "" {
			return nil, &provider.Error{Op: "search", Server: p.opts.URL, Rcode: -1, Code: "bad response", Err: errors.New("a record without _ref")}
		}
		if obj.field == "canonical" {
			v = provider.CanonicalName(v)
		}
		w := wapiRecord{ref: ref, value: v}
		w.useTTL, _ = m["use_ttl"].(bool)
		if t, ok := m["ttl"].(float64); ok && w.useTTL {
			w.ttl = uint32(t)
		}
		out = append(out, w)
	}
	return out, nil
}

// write sends a PUT, POST or DELETE to path (an object type or a _ref).
func (p *Provider) write(ctx context.Context, method, path string, body map[string]any) error {
	op := map[string]string{http.MethodPut: "update", http.MethodPost: "create", http.MethodDelete: "delete"}[method]
	_, err := p.do(ctx, op, method, path, body)
	return err
}

// do sends one WAPI request and returns the response body of a 2xx, or a
// *provider.Error carrying the HTTP status and WAPI's error code.
func (p *Provider) do(ctx context.Context, op, method, path string, body map[string]any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, rd)
	if err != nil {
		return nil, &provider.Error{Op: op, Server: p.opts.URL, Rcode: -1, Code: "bad request", Err: err}
	}
	req.SetBasicAuth(p.opts.Username, p.opts.Password)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.client.Do(req)
	if err != nil {
		var cv *tls.CertificateVerificationError
		if errors.As(err, &cv) {
			return nil, &provider.Error{Op: op, Server: p.opts.URL, Rcode: -1, Code: "TLS",
				Err: fmt.Errorf("the grid's certificate does not verify (give its CA with the CA file option): %w", cv.Err)}
		}
		return nil, provider.TransportError(ctx, op, p.opts.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, provider.TransportError(ctx, op, p.opts.URL, err)
	}
	if resp.StatusCode/100 == 2 {
		return b, nil
	}
	return nil, httpError(op, p.opts.URL, resp.StatusCode, b)
}

// httpError turns a WAPI error response into a *provider.Error. WAPI's
// body is {"Error": "...", "code": "Client.Ibap.Proto", "text": "..."};
// a 401 comes from the web server as HTML.
func httpError(op, server string, status int, body []byte) *provider.Error {
	var we struct {
		Error string `json:"Error"`
		Code  string `json:"code"`
		Text  string `json:"text"`
	}
	e := &provider.Error{Op: op, Server: server, Rcode: -1, Code: fmt.Sprintf("HTTP %d", status),
		Retry: status >= 500 || status == http.StatusTooManyRequests}
	if json.Unmarshal(body, &we) == nil && (we.Code != "" || we.Error != "") {
		if we.Code != "" {
			e.Code += " " + we.Code
		}
		text := we.Text
		if text == "" {
			text = we.Error
		}
		e.Err = errors.New(text)
	} else {
		e.Err = errors.New(http.StatusText(status))
	}
	if status == http.StatusUnauthorized {
		e.Err = fmt.Errorf("%w: the grid refused the username or password (check the credentials file)", e.Err)
	}
	return e
}
