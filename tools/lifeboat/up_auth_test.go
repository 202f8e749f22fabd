package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lifeboat.dev/pkg/testtool"
)

// TestUpRefusesWhatWouldLetStrangersIn: `lifeboat up` refuses at start,
// exit 1 and saying what to do: a node listening beyond loopback without
// --auth; a credential file others can read; a host the keys do not name;
// a host key from another init-cluster run. init-cluster refuses to
// overwrite keys and a missing --hosts is a usage error.
func TestUpRefusesWhatWouldLetStrangersIn(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "keys")
	var out bytes.Buffer
	if code := run([]string{"init-cluster", "--hosts", "hot,cold,witness", "--out", keys}, &out, &out); code != 0 {
		t.Fatalf("init-cluster: exit %d\n%s", code, out.String())
	}
	other := filepath.Join(t.TempDir(), "other")
	if code := run([]string{"init-cluster", "--hosts", "hot", "--out", other}, &out, &out); code != 0 {
		t.Fatalf("init-cluster: exit %d\n%s", code, out.String())
	}
	mixed := t.TempDir()
	for src, dst := range map[string]string{filepath.Join(keys, "cluster.json"): "cluster.json", filepath.Join(other, "host-hot.nk"): "host-hot.nk"} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mixed, dst), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	readable := t.TempDir()
	for _, f := range []string{"cluster.json", "host-hot.nk"} {
		b, _ := os.ReadFile(filepath.Join(keys, f))
		if err := os.WriteFile(filepath.Join(readable, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(filepath.Join(readable, f), 0o644)
	}
	up := func(extra ...string) []string {
		return append([]string{"up", "--data", t.TempDir(), "--http", testtool.FreeAddr(t)}, extra...)
	}
	_, port, _ := strings.Cut(testtool.FreeAddr(t), ":")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"beyond loopback without auth", up("--host", "hot", "--nats-listen", "0.0.0.0:"+port), 1,
			[]string{"refusing to listen on 0.0.0.0:" + port + " (--nats-listen) without authentication", "lifeboat init-cluster", "--insecure"}},
		{"cluster port beyond loopback without auth", up("--host", "hot", "--nats-listen", testtool.FreeAddr(t), "--cluster-listen", "0.0.0.0:"+port, "--peers", "10.255.0.2:6222"), 1,
			[]string{"(--cluster-listen) without authentication"}},
		{"credential readable by others", up("--host", "hot", "--auth", readable, "--nats-listen", testtool.FreeAddr(t)), 1,
			[]string{"readable or writable by others (mode 0644)", "chmod 600"}},
		{"host not in the keys", up("--host", "stranger", "--auth", keys, "--nats-listen", testtool.FreeAddr(t)), 1,
			[]string{`host "stranger" is not in`, "cold, hot, witness"}},
		{"host key of another run", up("--host", "hot", "--auth", mixed, "--nats-listen", testtool.FreeAddr(t)), 1,
			[]string{"different init-cluster runs"}},
		{"auth and insecure", up("--host", "hot", "--auth", keys, "--insecure", "--nats-listen", testtool.FreeAddr(t)), 2,
			[]string{"nats.insecure", "contradicts nats.auth"}},
		{"keys exist", []string{"init-cluster", "--hosts", "hot", "--out", keys}, 1,
			[]string{"already exists", "--force"}},
		{"no hosts", []string{"init-cluster", "--out", t.TempDir()}, 2,
			[]string{"--hosts is required"}},
		{"bad host name", []string{"init-cluster", "--hosts", "hot,co.ld", "--out", t.TempDir()}, 1,
			[]string{`host name "co.ld"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			code := run(tc.args, &out, &out)
			if code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
