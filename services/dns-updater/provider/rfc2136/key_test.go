package rfc2136

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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
		{"unknown option", "key \"k\" {\n colour blue;\n};", []string{"line 2", "unknown key option"}},
		{"stray second line", "hmac-sha256:lifeboat:" + secret + "\nstray\n", []string{"line 2", "second line", "line 1"}},
		{"options quoted", "options { directory \"/x\"; };", []string{"line 1", `"options"`}},
		{"sha3 quoted", "key k {\n algorithm hmac-sha3;\n};", []string{"line 2", `"hmac-sha3"`}},
		{"no secret", "key \"k\" { algorithm hmac-sha256; };", []string{"no secret"}},
		{"secret not base64", "key \"k\" { secret \"not base64!\"; };", []string{"not base64"}},
		{"two keys", "key a { secret \"" + secret + "\"; };\nkey b { secret \"" + secret + "\"; };", []string{"line 2", "one key"}},
		{"unterminated", "key \"k\" { secret \"abc", []string{"line 1", "never closed"}},
		{"open comment", "key k { /* secret \"x\"; };", []string{"never closed"}},
		{"cut short", "key \"k\" { algorithm hmac-sha256;", []string{"ends"}},
		{"not a key", "options { directory \"/x\"; };", []string{"line 1", "options"}},
		{"too many fields", "a:b:c:d", []string{"line 1", "4 fields"}},
		{"no algorithm among three", "a:b:" + secret, []string{"supported algorithm"}},
		{"bad name", "a..b:" + secret, []string{"line 1", "not a domain name"}},
		{"bad name in BIND", "# k\nkey \"a..b\" { secret \"" + secret + "\"; };", []string{"line 2", "not a domain name"}},
		{"secret not base64 on its line", "key k {\n algorithm hmac-sha256;\n secret \"a!b\";\n};", []string{"line 3", "not base64"}},
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

// badKeys are broken key files with the secret planted at S: in a stray
// line, in the place of a keyword, a name, an algorithm or a punctuation
// mark, misspelt, duplicated, after the key, in an unclosed string or
// comment.
var badKeys = []string{
	"hmac-sha256:lifeboat:S\nstray",
	"hmac-sha256:lifeboat:S\n\nhmac-sha256:other:S\n",
	"lifeboat:S\n};",
	"lifeboat:S\n// a comment\n",
	"lifeboat:S\nkey \"k\" { secret \"S\"; };",
	"S",
	"S\nS",
	"S:S:S",
	"hmac-sha3:k:S",
	"a:b:c:S",
	"S:hmac-sha256:x!y",
	"k:S!",
	"k:S\x00",
	"S { };",
	"\"S\"",
	"options { S };",
	"key \"k\" { \"S\"; };",
	"key \"k\" { S; };",
	"key \"k\" {\n secret \"S\";\n S\n};",
	"key \"k\" { secret \"S\" };",
	"key \"k\" { secret \"S\" \"S\"; };",
	"key \"k\" { secret S S; };",
	"key \"k\" { secret \"S!\"; };",
	"key \"k\" { secret \"S S\"; };",
	"key \"k\" { algorithm \"S\"; secret \"S\"; };",
	"key \"k\" { algorithm S; };",
	"key \"k\" { algorithm hmac-S; };",
	"key \"k\" { S \"S\"; };",
	"key \"S\" { secret \"S\"; }",
	"key \"S..x\" { secret \"S\"; };",
	"key S",
	"key \"k\" { secret",
	"key \"k\" { secret \"S\"; };\nS",
	"key \"k\" { secret \"S\"; };\n\"S\"",
	"key \"k\" { secret \"S\"; } S;",
	"key \"k\" { secret \"S\"; };\nkey \"k2\" { secret \"S\"; };",
	"key { secret \"S\"; };",
	"key \"k\" { secret \"S",
	"key \"k\" { /* S",
	"key \"k\" { secret \"S\nS\"; };",
}

// TestNoErrorQuotesTheSecret plants known secrets in every bad key file
// and fails if any error, from ParseKey or ReadKeyFile, holds one, or any
// 8 characters of one, or fails to name a line.
func TestNoErrorQuotesTheSecret(t *testing.T) {
	secrets := []string{
		secret,                     // tsig-keygen's form
		"c2VjcmV0c2VjcmV0c2VjcmV0", // no + nor /, looks like a word
		"Qz9XwV7u",                 // short
	}
	line := regexp.MustCompile(`\bline [0-9]+\b`)
	dir := t.TempDir()
	for i, tmpl := range badKeys {
		for j, s := range secrets {
			text := strings.ReplaceAll(tmpl, "S", s)
			_, perr := ParseKey(text)
			path := filepath.Join(dir, fmt.Sprintf("key-%d-%d", i, j))
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			_, rerr := ReadKeyFile(path)
			for _, err := range []error{perr, rerr} {
				if err == nil {
					t.Errorf("%q: parsed, want an error", text)
					continue
				}
				msg := err.Error()
				for k := 0; k+8 <= len(s); k++ {
					if part := s[k : k+8]; strings.Contains(msg, part) {
						t.Errorf("%q: error %q holds %q of the secret", text, msg, part)
						break
					}
				}
				if !line.MatchString(msg) {
					t.Errorf("%q: error %q does not say which line is wrong", text, msg)
				}
			}
		}
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

var base64Runs = regexp.MustCompile(`[A-Za-z0-9+/=]{16,}`)

// FuzzParseKey: any text either fails with an error that quotes no long
// base64 run of it, or gives a key that can sign a message.
func FuzzParseKey(f *testing.F) {
	f.Add("key \"lifeboat\" {\n\talgorithm hmac-sha256;\n\tsecret \"" + secret + "\";\n};\n")
	f.Add("hmac-sha512:k:" + secret)
	f.Add("key k { /* c */ secret \"" + secret + "\"; }; # x")
	f.Add("hmac-sha256:lifeboat:" + secret + "\nstray")
	f.Add("key \"k\" { \"" + secret + "\"; };")
	f.Fuzz(func(t *testing.T, text string) {
		k, err := ParseKey(text)
		if err != nil {
			// No run of base64 of the text long enough to be a secret
			// is in the error.
			for _, run := range base64Runs.FindAllString(text, -1) {
				if strings.Contains(err.Error(), run) {
					t.Fatalf("error %q for %q holds %q of the text", err, text, run)
				}
			}
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
