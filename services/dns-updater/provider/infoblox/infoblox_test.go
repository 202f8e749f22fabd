package infoblox_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"lifeboat.dev/services/dns-updater/provider"
	"lifeboat.dev/services/dns-updater/provider/infoblox"
	"lifeboat.dev/services/dns-updater/provider/infoblox/infobloxfake"
	"lifeboat.dev/services/dns-updater/provider/providertest"
)

const zone = "example.test."

// setup starts a fake grid holding providertest's kept record and returns
// a provider for it, configured as an operator would: credentials from a
// file, the grid's CA from a file, the grid member's DNS address to verify
// against.
func setup(t *testing.T, edit func(*infoblox.Options)) (*infobloxfake.Fake, *infoblox.Provider) {
	t.Helper()
	f := infobloxfake.Start(t, zone)
	kept := providertest.Kept(zone)
	f.Add(kept.Type, kept.Name, kept.Value, kept.TTL)
	creds := filepath.Join(t.TempDir(), "infoblox.cred")
	if err := os.WriteFile(creds, []byte("# wapi user\n"+f.Username+":"+f.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := infoblox.NewOptions(f.URL, zone)
	var err error
	if opts.Username, opts.Password, err = infoblox.ReadCredentials(creds); err != nil {
		t.Fatal(err)
	}
	opts.CAFile = f.CAFile
	opts.Owned = provider.OwnedNames(providertest.Owned(zone)...)
	opts.Authoritative = []string{f.DNSAddr}
	if edit != nil {
		edit(&opts)
	}
	p, err := infoblox.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return f, p
}

func TestConformanceAgainstFakeWAPI(t *testing.T) {
	providertest.Run(t, func(t *testing.T) provider.Provider {
		_, p := setup(t, nil)
		return p
	}, zone)
}

var www = provider.Record{Name: "www." + zone, Type: "A", Value: "192.0.2.2", TTL: 60}

// methods returns the HTTP methods and object types of the requests, e.g.
// "GET record:a", "PUT record:a/...".
func methods(f *infobloxfake.Fake) []string {
	var out []string
	for _, r := range f.Requests() {
		method, uri, _ := strings.Cut(r, " ")
		_, rest, _ := strings.Cut(strings.TrimPrefix(uri, "/wapi/"), "/")
		obj, _, _ := strings.Cut(rest, "?")
		obj, _, _ = strings.Cut(obj, "/")
		out = append(out, method+" "+obj)
	}
	return out
}

func TestUpdatesInPlace(t *testing.T) {
	f, p := setup(t, nil)
	f.Add("A", "www."+zone, "192.0.2.1", 300)
	if err := p.Set(t.Context(), []provider.Record{www}); err != nil {
		t.Fatal(err)
	}
	if got, want := methods(f), []string{"GET record:a", "PUT record:a"}; !slices.Equal(got, want) {
		t.Fatalf("requests %q, want %q (search, then update the one record in place)", got, want)
	}
	got, err := p.Get(t.Context(), www.Name, "A")
	if err != nil || !slices.Equal(got, []provider.Record{www}) {
		t.Fatalf("Get = %v (%v), want %v", got, err, www)
	}
	if q := f.Requests()[0]; !strings.Contains(q, "name=www.example.test&") || !strings.Contains(q, "view=default") {
		t.Fatalf("search %q does not ask by name and view", q)
	}
}

func TestCreatesWhenAbsent(t *testing.T) {
	f, p := setup(t, nil)
	if err := p.Set(t.Context(), []provider.Record{www}); err != nil {
		t.Fatal(err)
	}
	if got, want := methods(f), []string{"GET record:a", "POST record:a"}; !slices.Equal(got, want) {
		t.Fatalf("requests %q, want %q", got, want)
	}
	// Setting it again changes nothing and sends nothing but the search.
	if err := p.Set(t.Context(), []provider.Record{www}); err != nil {
		t.Fatal(err)
	}
	if got := methods(f); len(got) != 3 || got[2] != "GET record:a" {
		t.Fatalf("requests after an unchanged Set %q", got)
	}
}

func expectWAPIError(t *testing.T, err error, code string, temporary bool) {
	t.Helper()
	t.Logf("error: %v", err)
	pe, ok := provider.AsError(err)
	if !ok {
		t.Fatalf("error %v carries no provider.Error", err)
	}
	if pe.Code != code || pe.Temporary() != temporary {
		t.Fatalf("code %q temporary %v, want %q %v (error %v)", pe.Code, pe.Temporary(), code, temporary, err)
	}
}

func TestWrongPasswordIsHTTP401(t *testing.T) {
	_, p := setup(t, func(o *infoblox.Options) { o.Password = "wrong" })
	err := p.Set(t.Context(), []provider.Record{www})
	expectWAPIError(t, err, "HTTP 401", false)
	if !strings.Contains(err.Error(), "credentials") {
		t.Fatalf("error %q does not point at the credentials", err)
	}
}

func TestTLSIsVerifiedByDefault(t *testing.T) {
	_, p := setup(t, func(o *infoblox.Options) { o.CAFile = "" })
	err := p.Set(t.Context(), []provider.Record{www})
	expectWAPIError(t, err, "TLS", false)
}

func TestGridOutageIsTemporary(t *testing.T) {
	f, p := setup(t, nil)
	f.SetOutage(true)
	expectWAPIError(t, p.Set(t.Context(), []provider.Record{www}), "HTTP 503", true)
	f.SetOutage(false)
	if err := p.Set(t.Context(), []provider.Record{www}); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
}

// TestWAPIErrorBody: a zone the grid does not hold gets WAPI's 400 with
// its code and text, which the error carries.
func TestWAPIErrorBody(t *testing.T) {
	_, p := setup(t, func(o *infoblox.Options) {
		o.Zone = "other.test."
		o.Owned = provider.OwnedNames("www.other.test.")
	})
	err := p.Set(t.Context(), []provider.Record{{Name: "www.other.test.", Type: "A", Value: "192.0.2.1", TTL: 60}})
	expectWAPIError(t, err, "HTTP 400 Client.Ibap.Data.Conflict", false)
	if !strings.Contains(err.Error(), "A parent was not found") {
		t.Fatalf("error %q lacks WAPI's text", err)
	}
}

func TestReadCredentials(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, text, user, pass string
		ok                     bool
	}{
		{"plain", "admin:pa:ss\n", "admin", "pa:ss", true},
		{"comment", "# grid\n\n admin:x \n", "admin", "x", true},
		{"no colon", "admin\n", "", "", false},
		{"no password", "admin:\n", "", "", false},
		{"empty", "# nothing\n", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			u, p, err := infoblox.ReadCredentials(path)
			if (err == nil) != tc.ok || u != tc.user || p != tc.pass {
				t.Fatalf("ReadCredentials = %q, %q, %v", u, p, err)
			}
			if err != nil && !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
		})
	}
}

func TestNewChecksOptions(t *testing.T) {
	for _, opts := range []infoblox.Options{
		{URL: "gm.example.test", Zone: zone},
		{URL: "http://gm.example.test", Zone: zone},
		{URL: "https://gm.example.test", Zone: "bad..zone"},
		{URL: "https://gm.example.test", Zone: zone, CAFile: "/nonexistent/ca.pem"},
	} {
		if _, err := infoblox.New(opts); err == nil {
			t.Errorf("New(%+v) succeeded", opts)
		}
	}
}

// TestPlainHTTPIsRefused: TLS verification cannot be side-stepped by
// giving an http:// URL; the password would travel in the clear.
func TestPlainHTTPIsRefused(t *testing.T) {
	opts := infoblox.NewOptions("http://gm.example.test", zone)
	opts.Username, opts.Password = "u", "p"
	_, err := infoblox.New(opts)
	if err == nil || !strings.Contains(err.Error(), `"http://gm.example.test"`) || !strings.Contains(err.Error(), "https://") {
		t.Fatalf("New with an http URL = %v, want a refusal quoting the URL and asking for https", err)
	}
}
