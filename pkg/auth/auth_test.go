package auth

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestInitWritesPrivateFilesThatLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	files, err := Init(dir, []string{"hot", "cold", "witness"}, "site", false)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"cluster.json", "host-cold.nk", "host-hot.nk", "host-witness.nk", "operator.nk", "runner-cold.nk", "runner-hot.nk", "runner-witness.nk"}
	if !slices.Equal(files, want) {
		t.Fatalf("files %v, want %v", files, want)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %04o, want 0700", fi.Mode().Perm())
	}
	for _, f := range files {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", f, fi.Mode().Perm(), err)
		}
	}
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Hosts) != 3 || len(c.Runners) != 3 || len(c.Operators) != 1 || c.Route.Password == "" || c.ClusterName != "site" {
		t.Fatalf("cluster.json = %+v", c)
	}
	if _, err := c.HostSeed(dir, "cold"); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(dir, []string{"hot"}, "", false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("overwrite without force: %v", err)
	}
	if _, err := Init(dir, []string{"hot"}, "", true); err != nil {
		t.Fatalf("overwrite with force: %v", err)
	}
	if _, err := c.HostSeed(dir, "hot"); err == nil || !strings.Contains(err.Error(), "different init-cluster runs") {
		t.Fatalf("a seed of another run: %v", err)
	}
}

func TestBadInputIsRefusedSayingWhy(t *testing.T) {
	for _, tc := range []struct {
		hosts []string
		want  string
	}{
		{nil, "no hosts"},
		{[]string{"hot", "hot"}, "listed twice"},
		{[]string{"a.b"}, `"a.b"`},
		{[]string{"-x"}, `"-x"`},
	} {
		if _, err := Init(t.TempDir(), tc.hosts, "", false); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Init(%q): %v, want %q", tc.hosts, err, tc.want)
		}
	}
	dir := t.TempDir()
	if _, err := Init(dir, []string{"hot"}, "", false); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, ClusterFile), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("group-readable cluster.json: %v", err)
	}
	_ = os.Chmod(filepath.Join(dir, ClusterFile), 0o600)
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.HostSeed(dir, "cold"); err == nil || !strings.Contains(err.Error(), `host "cold" is not in`) {
		t.Errorf("unknown host: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ClusterFile), []byte(`{"version":1,"route":{},"hosts":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "no route credential") {
		t.Errorf("no route credential: %v", err)
	}
}

func TestRunnerPermissionsAreItsHostsOnly(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(dir, []string{"hot", "cold"}, "", false); err != nil {
		t.Fatal(err)
	}
	c, _ := Load(dir)
	for _, u := range c.ServerAuth().Users {
		switch {
		case strings.HasPrefix(u.Name, "runner hot"):
			if !slices.Contains(u.Publish, "lifeboat.runner.hot.>") || slices.Contains(u.Publish, "lifeboat.runner.cold.>") || slices.ContainsFunc(u.Publish, func(s string) bool { return strings.HasPrefix(s, "lifeboat.cmd") || s == ">" }) {
				t.Errorf("runner hot may publish %v", u.Publish)
			}
		case strings.HasPrefix(u.Name, "host"), strings.HasPrefix(u.Name, "operator"):
			if u.Publish != nil || u.Subscribe != nil {
				t.Errorf("%s is restricted: %v %v", u.Name, u.Publish, u.Subscribe)
			}
		}
	}
}

func TestSignatureCoversSubjectIDAndBody(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(dir, []string{"hot"}, "", false); err != nil {
		t.Fatal(err)
	}
	kp, err := ReadSeed(filepath.Join(dir, OperatorSeedFile))
	if err != nil {
		t.Fatal(err)
	}
	h := map[string][]string{}
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	if err := Sign(kp, "lifeboat.cmd.dns-updater.set", "id-1", h, []byte(`{"a":1}`), at); err != nil {
		t.Fatal(err)
	}
	get := func(k string) string {
		if v := h[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	sig, err := Verify("lifeboat.cmd.dns-updater.set", "id-1", get, []byte(`{"a":1}`))
	pub, _ := kp.PublicKey()
	if err != nil || sig.Key != pub || !sig.At.Equal(at) {
		t.Fatalf("Verify = %+v, %v", sig, err)
	}
	c, _ := Load(dir)
	if name, ok := c.Operator(sig.Key); !ok || name != OperatorName {
		t.Errorf("Operator(%s) = %q %v", sig.Key, name, ok)
	}
	for _, tc := range []struct{ subject, id, body string }{
		{"lifeboat.cmd.restore.failover", "id-1", `{"a":1}`},
		{"lifeboat.cmd.dns-updater.set", "id-2", `{"a":1}`},
		{"lifeboat.cmd.dns-updater.set", "id-1", `{"a":2}`},
	} {
		if _, err := Verify(tc.subject, tc.id, get, []byte(tc.body)); err == nil || errors.Is(err, ErrUnsigned) {
			t.Errorf("Verify of an altered message (%s %s %s): %v", tc.subject, tc.id, tc.body, err)
		}
	}
	if _, err := Verify("s", "i", func(string) string { return "" }, nil); !errors.Is(err, ErrUnsigned) {
		t.Errorf("unsigned: %v", err)
	}
}
