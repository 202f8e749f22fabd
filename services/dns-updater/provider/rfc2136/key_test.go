package rfc2136

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

const secret = "K2tf3TRjvQkVCmJF3/Z9vA=="

func TestParseKey(t *testing.T) {
	want := Key{Name: "lifeboat.", Algorithm: dns.HmacSHA256, Secret: secret}
	for _, tc := range []struct {
		name, text string
		want       Key
	}{
		{"tsig-keygen output", "key \"lifeboat\" {\n\talgorithm hmac-sha256;\n\tsecret \"" + secret + "\";\n};\n", want},
		{"one line, comments", "# made by hand\nkey lifeboat. { algorithm HMAC-SHA256; /* strong */ secret \"" + secret + "\"; }; // done\n", want},
		{"sha512", "key \"lifeboat.\" { algorithm hmac-sha512; secret \"" + secret + "\"; };", Key{Name: "lifeboat.", Algorithm: dns.HmacSHA512, Secret: secret}},
		{"no algorithm means sha256", "key \"lifeboat\" { secret \"" + secret + "\"; };", want},
		{"nsupdate -y", "hmac-sha256:lifeboat:" + secret + "\n", want},
		{"name:algorithm:secret", "lifeboat:hmac-sha1:" + secret, Key{Name: "lifeboat.", Algorithm: dns.HmacSHA1, Secret: secret}},
		{"name:secret", "# key\nlifeboat:" + secret, want},
		{"secret holding //", "lifeboat:ab//cd+/ef==", Key{Name: "lifeboat.", Algorithm: dns.HmacSHA256, Secret: "ab//cd+/ef=="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseKey(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseKeyErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"empty", "# nothing\n", []string{"no key"}},
		{"missing semicolon", "key \"k\" {\n algorithm hmac-sha256\n secret \"" + secret + "\";\n};", []string{"line 3", `";"`, "algorithm"}},
		{"unknown algorithm", "key \"k\" {\n algorithm hmac-sha3;\n secret \"" + secret + "\";\n};", []string{"line 2", "hmac-sha3", "not supported"}},
		{"unknown option", "key \"k\" {\n colour blue;\n};", []string{"line 2", "colour"}},
		{"no secret", "key \"k\" { algorithm hmac-sha256; };", []string{"no secret"}},
		{"secret not base64", "key \"k\" { secret \"not base64!\"; };", []string{"not base64"}},
		{"two keys", "key a { secret \"" + secret + "\"; };\nkey b { secret \"" + secret + "\"; };", []string{"line 2", "one key"}},
		{"unterminated", "key \"k\" { secret \"abc", []string{"line 1", "never closed"}},
		{"open comment", "key k { /* secret \"x\"; };", []string{"never closed"}},
		{"cut short", "key \"k\" { algorithm hmac-sha256;", []string{"ends"}},
		{"not a key", "options { directory \"/x\"; };", []string{"line 1", "options"}},
		{"too many fields", "a:b:c:d", []string{"line 1", "4 fields"}},
		{"no algorithm among three", "a:b:" + secret, []string{"supported algorithm"}},
		{"bad name", "a..b:" + secret, []string{"not a domain name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseKey(tc.text)
			if err == nil {
				t.Fatal("parsed")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("error %q shows the secret", err)
			}
		})
	}
}

func TestReadKeyFileNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tsig.key")
	if err := os.WriteFile(path, []byte("key k { secret \"!!\"; };"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadKeyFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("ReadKeyFile = %v, want an error naming %s", err, path)
	}
	if _, err := ReadKeyFile(filepath.Join(t.TempDir(), "absent")); err == nil {
		t.Fatal("ReadKeyFile of a missing file succeeded")
	}
}

// FuzzParseKey: any text either fails with an error or gives a key that
// can sign a message.
func FuzzParseKey(f *testing.F) {
	f.Add("key \"lifeboat\" {\n\talgorithm hmac-sha256;\n\tsecret \"" + secret + "\";\n};\n")
	f.Add("hmac-sha512:k:" + secret)
	f.Add("key k { /* c */ secret \"" + secret + "\"; }; # x")
	f.Fuzz(func(t *testing.T, text string) {
		k, err := ParseKey(text)
		if err != nil {
			return
		}
		m := new(dns.Msg)
		m.SetUpdate("example.test.")
		m.SetTsig(k.Name, k.Algorithm, 300, 0)
		if _, _, err := dns.TsigGenerate(m, k.Secret, "", false); err != nil {
			t.Fatalf("key %+v from %q cannot sign: %v", k, text, err)
		}
	})
}
