// Package infobloxfake is a fake of the Infoblox WAPI, a vendor's API that
// nobody can run in this project's tests. It is not Infoblox: it follows
// the published WAPI shapes closely enough to test a client (URLs
// /wapi/vX.Y/record:a?name=...&view=..., _ref strings such as
// "record:a/ZG5z...:www.example.test/default", JSON error bodies
// {"Error": "AdmConProtoError: ...", "code": "Client.Ibap.Proto",
// "text": "..."} with HTTP 400, an HTML 401 from the web server for bad
// credentials), over HTTPS with a test certificate. Like a grid member, it
// also answers DNS for its zone, authoritatively, so changes can be
// verified.
//
// Only record:a, record:aaaa, record:cname and record:txt, searched by
// exact name and view, are modelled.
package infobloxfake

import (
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// Fake is a running fake grid.
type Fake struct {
	// URL is the grid master's base URL (https).
	URL string
	// CAFile is a PEM file holding the certificate the fake serves, to
	// trust it.
	CAFile string
	// DNSAddr is where the fake answers DNS for Zone (UDP and TCP).
	DNSAddr string
	// Zone is the zone it serves, fully qualified.
	Zone string
	// Username and Password are the credentials it accepts.
	Username, Password string

	mu       sync.Mutex
	records  map[string]*record // by _ref
	next     int
	outage   bool
	requests []string
}

type record struct {
	typ, name, view, value string // typ: "record:a"...; name without trailing dot
	ttl                    uint32
	useTTL                 bool
	id                     int
}

var fields = map[string]string{"record:a": "ipv4addr", "record:aaaa": "ipv6addr", "record:cname": "canonical", "record:txt": "text"}

var wapiPath = regexp.MustCompile(`^/wapi/v2\.\d+(\.\d+)?/(.+)$`)

// Start runs a fake grid serving zone, stopped when the test ends.
func Start(t testing.TB, zone string) *Fake {
	t.Helper()
	f := &Fake{Zone: dns.Fqdn(strings.ToLower(zone)), Username: "lifeboat", Password: "s3cret:with:colons", records: map[string]*record{}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serveHTTP))
	// A client refusing the test certificate is a case tests make on
	// purpose; the server need not log it.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	f.CAFile = filepath.Join(t.TempDir(), "grid-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(f.CAFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	pc, ln := listenDNS(t)
	for _, srv := range []*dns.Server{
		{PacketConn: pc, Handler: dns.HandlerFunc(f.serveDNS)},
		{Listener: ln, Handler: dns.HandlerFunc(f.serveDNS)},
	} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	f.DNSAddr = pc.LocalAddr().String()
	return f
}

// listenDNS opens UDP and TCP on one free loopback port.
func listenDNS(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln
		}
		pc.Close()
	}
	t.Fatal("infobloxfake: no free loopback port for UDP and TCP")
	return nil, nil
}

// Add puts a record in the default view, as if an operator had created it,
// and returns its _ref. rtype is A, AAAA, CNAME or TXT.
func (f *Fake) Add(rtype, name, value string, ttl uint32) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &record{typ: "record:" + strings.ToLower(rtype), name: strings.TrimSuffix(strings.ToLower(name), "."), view: "default", value: value, ttl: ttl, useTTL: true}
	return f.insert(r)
}

// SetOutage makes every API request fail with 503 while on.
func (f *Fake) SetOutage(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.outage = on
}

// Requests returns "METHOD path" of every API request received, in order.
func (f *Fake) Requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func (f *Fake) insert(r *record) string {
	f.next++
	r.id = f.next
	ref := f.ref(r)
	f.records[ref] = r
	return ref
}

// ref builds a _ref the way WAPI shapes them: type, an opaque base64 id,
// then name/view.
func (f *Fake) ref(r *record) string {
	id := base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "dns.bind_%s$._%s.%s.%d", strings.TrimPrefix(r.typ, "record:"), r.view, r.name, r.id))
	return fmt.Sprintf("%s/%s:%s/%s", r.typ, id, r.name, r.view)
}

func wapiError(w http.ResponseWriter, status int, class, code, text string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"Error": class + ": " + text, "code": code, "text": text})
}

func (f *Fake) serveHTTP(w http.ResponseWriter, req *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, req.Method+" "+req.URL.RequestURI())
	if f.outage {
		http.Error(w, "Service Unavailable", http.StatusServiceUnavailable)
		return
	}
	if u, p, ok := req.BasicAuth(); !ok || u != f.Username || p != f.Password {
		w.Header().Set("WWW-Authenticate", `Basic realm="InfoBlox ONE Platform"`)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head><title>401 Authorization Required</title></head><body><h1>Authorization Required</h1></body></html>\n")
		return
	}
	m := wapiPath.FindStringSubmatch(req.URL.Path)
	if m == nil {
		wapiError(w, http.StatusBadRequest, "AdmConProtoError", "Client.Ibap.Proto", "Unknown WAPI version or path: "+req.URL.Path)
		return
	}
	target := m[2]
	switch {
	case req.Method == http.MethodGet && fields[target] != "":
		f.search(w, req, target)
	case req.Method == http.MethodPost && fields[target] != "":
		f.create(w, req, target)
	case (req.Method == http.MethodPut || req.Method == http.MethodDelete) && strings.Contains(target, "/"):
		r := f.records[target]
		if r == nil {
			wapiError(w, http.StatusNotFound, "AdmConDataNotFoundError", "Client.Ibap.Data.NotFound", "Reference "+target+" not found")
			return
		}
		if req.Method == http.MethodDelete {
			delete(f.records, target)
			json.NewEncoder(w).Encode(target)
			return
		}
		f.update(w, req, target, r)
	default:
		wapiError(w, http.StatusBadRequest, "AdmConProtoError", "Client.Ibap.Proto", fmt.Sprintf("Unsupported method %s for %s", req.Method, target))
	}
}

func (f *Fake) search(w http.ResponseWriter, req *http.Request, typ string) {
	q := req.URL.Query()
	for k := range q {
		if k != "name" && k != "view" && k != "_return_fields+" && k != "_return_fields" && k != "_max_results" {
			wapiError(w, http.StatusBadRequest, "AdmConProtoError", "Client.Ibap.Proto", "Unknown argument/field: '"+k+"'")
			return
		}
	}
	extra := strings.Split(q.Get("_return_fields+"), ",")
	out := []map[string]any{}
	for ref, r := range f.records {
		if r.typ != typ || (q.Has("name") && r.name != strings.ToLower(q.Get("name"))) || (q.Has("view") && r.view != q.Get("view")) {
			continue
		}
		o := map[string]any{"_ref": ref, "name": r.name, "view": r.view, fields[typ]: r.value}
		if slices.Contains(extra, "ttl") && r.useTTL {
			o["ttl"] = r.ttl
		}
		if slices.Contains(extra, "use_ttl") {
			o["use_ttl"] = r.useTTL
		}
		out = append(out, o)
	}
	slices.SortFunc(out, func(a, b map[string]any) int { return strings.Compare(a["_ref"].(string), b["_ref"].(string)) })
	json.NewEncoder(w).Encode(out)
}

// decode reads a JSON object body, refusing fields the object type lacks.
func decode(w http.ResponseWriter, req *http.Request, typ string) (map[string]any, bool) {
	var body map[string]any
	if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
		wapiError(w, http.StatusBadRequest, "AdmConProtoError", "Client.Ibap.Proto", "JSON decoding error: "+err.Error())
		return nil, false
	}
	for k := range body {
		if k != "name" && k != "view" && k != "ttl" && k != "use_ttl" && k != fields[typ] {
			wapiError(w, http.StatusBadRequest, "AdmConProtoError", "Client.Ibap.Proto", "Unknown argument/field: '"+k+"'")
			return nil, false
		}
	}
	return body, true
}

// apply checks and copies body's fields into r.
func (f *Fake) apply(w http.ResponseWriter, r *record, body map[string]any) bool {
	field := fields[r.typ]
	if v, ok := body[field]; ok {
		s, _ := v.(string)
		a, err := netip.ParseAddr(s)
		switch {
		case field == "ipv4addr" && (err != nil || !a.Is4()):
			wapiError(w, http.StatusBadRequest, "AdmConProtoError", "Client.Ibap.Proto", fmt.Sprintf("Invalid value for ipv4addr: %q: Invalid IPv4 address", s))
			return false
		case field == "ipv6addr" && (err != nil || !a.Is6()):
			wapiError(w, http.StatusBadRequest, "AdmConProtoError", "Client.Ibap.Proto", fmt.Sprintf("Invalid value for ipv6addr: %q: Invalid IPv6 address", s))
			return false
		case (field == "canonical" || field == "text") && s == "":
			wapiError(w, http.StatusBadRequest, "AdmConProtoError", "Client.Ibap.Proto", "Empty value for "+field)
			return false
		}
		r.value = s
	}
	if v, ok := body["name"].(string); ok {
		r.name = strings.TrimSuffix(strings.ToLower(v), ".")
	}
	if v, ok := body["view"].(string); ok {
		r.view = v
	}
	if v, ok := body["ttl"].(float64); ok {
		r.ttl = uint32(v)
	}
	if v, ok := body["use_ttl"].(bool); ok {
		r.useTTL = v
	}
	if !dns.IsSubDomain(f.Zone, r.name+".") {
		wapiError(w, http.StatusBadRequest, "AdmConDataError", "Client.Ibap.Data.Conflict", "The action is not allowed. A parent was not found.")
		return false
	}
	for ref, o := range f.records {
		if o != r && o.typ == r.typ && o.name == r.name && o.view == r.view && o.value == r.value {
			wapiError(w, http.StatusBadRequest, "AdmConDataError", "Client.Ibap.Data.Conflict", fmt.Sprintf("The record '%s' already exists (%s).", r.name, ref))
			return false
		}
	}
	return true
}

func (f *Fake) create(w http.ResponseWriter, req *http.Request, typ string) {
	body, ok := decode(w, req, typ)
	if !ok {
		return
	}
	if _, ok := body["name"]; !ok {
		wapiError(w, http.StatusBadRequest, "AdmConProtoError", "Client.Ibap.Proto", "Field is not writable or missing: name")
		return
	}
	if _, ok := body[fields[typ]]; !ok {
		wapiError(w, http.StatusBadRequest, "AdmConProtoError", "Client.Ibap.Proto", "Required field missing: "+fields[typ])
		return
	}
	r := &record{typ: typ, view: "default"}
	if !f.apply(w, r, body) {
		return
	}
	ref := f.insert(r)
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(ref)
}

func (f *Fake) update(w http.ResponseWriter, req *http.Request, ref string, r *record) {
	body, ok := decode(w, req, r.typ)
	if !ok {
		return
	}
	c := *r
	if !f.apply(w, &c, body) {
		return
	}
	// WAPI may hand back a new _ref after an update (it encodes the name);
	// clients must not keep the old one.
	delete(f.records, ref)
	newRef := f.ref(&c)
	f.records[newRef] = &c
	json.NewEncoder(w).Encode(newRef)
}

// serveDNS answers for the zone from the records of the default view.
func (f *Fake) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if !dns.IsSubDomain(f.Zone, name) {
		m.Rcode = dns.RcodeRefused
		w.WriteMsg(m)
		return
	}
	m.Authoritative = true
	soa := &dns.SOA{Hdr: dns.RR_Header{Name: f.Zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60},
		Ns: "ns." + f.Zone, Mbox: "hostmaster." + f.Zone, Serial: 1, Refresh: 3600, Retry: 600, Expire: 604800, Minttl: 60}
	f.mu.Lock()
	exists := name == f.Zone
	for _, r := range f.records {
		if r.view != "default" || r.name+"." != name {
			continue
		}
		exists = true
		typ := dns.StringToType[strings.ToUpper(strings.TrimPrefix(r.typ, "record:"))]
		if typ != q.Qtype && typ != dns.TypeCNAME {
			continue
		}
		rr, err := dns.NewRR(fmt.Sprintf("%s %d IN %s %s", name, r.ttl, dns.TypeToString[typ], rdata(typ, r.value)))
		if err == nil {
			m.Answer = append(m.Answer, rr)
		}
	}
	f.mu.Unlock()
	if q.Qtype == dns.TypeSOA && name == f.Zone {
		m.Answer = append(m.Answer, soa)
	}
	if len(m.Answer) == 0 {
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
		m.Ns = append(m.Ns, soa)
	}
	w.WriteMsg(m)
}

func rdata(typ uint16, v string) string {
	switch typ {
	case dns.TypeTXT:
		return `"` + v + `"`
	case dns.TypeCNAME:
		return dns.Fqdn(v)
	}
	return v
}
