package rfc2136

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/miekg/dns"
)

// Key is a TSIG key: its name, its HMAC algorithm (a miekg/dns name such
// as dns.HmacSHA256, "hmac-sha256.") and its base64 secret.
type Key struct {
	Name      string
	Algorithm string
	Secret    string
}

// algorithms maps the names BIND and nsupdate accept to miekg/dns's.
var algorithms = map[string]string{
	"hmac-md5":                 dns.HmacMD5,
	"hmac-md5.sig-alg.reg.int": dns.HmacMD5,
	"hmac-sha1":                dns.HmacSHA1,
	"hmac-sha224":              dns.HmacSHA224,
	"hmac-sha256":              dns.HmacSHA256,
	"hmac-sha384":              dns.HmacSHA384,
	"hmac-sha512":              dns.HmacSHA512,
}

func algorithm(name string) (string, bool) {
	a, ok := algorithms[strings.TrimSuffix(strings.ToLower(name), ".")]
	return a, ok
}

// ReadKeyFile reads a TSIG key from path. See ParseKey for the formats.
func ReadKeyFile(path string) (Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("tsig key: %w", err)
	}
	k, err := ParseKey(string(b))
	if err != nil {
		return Key{}, fmt.Errorf("tsig key file %s: %w", path, err)
	}
	return k, nil
}

// ParseKey reads a TSIG key in one of two formats. The first is BIND's,
// as tsig-keygen prints it and named.conf includes it:
//
//	key "lifeboat." {
//		algorithm hmac-sha256;
//		secret "base64...";
//	};
//
// with #, // and /* */ comments; the text must hold exactly one key. The
// second is one line as nsupdate -y takes it, [algorithm:]name:secret, or
// name:algorithm:secret. The algorithm defaults to hmac-sha256. Errors
// say which line is wrong and never quote the secret.
func ParseKey(text string) (Key, error) {
	var (
		k   Key
		err error
	)
	if line, n, ok := oneLine(text); ok {
		k, err = parseLine(line, n)
	} else {
		var toks []token
		toks, err = tokenize(text)
		switch {
		case err != nil:
		case len(toks) == 0:
			err = errors.New("no key in it (write one as tsig-keygen prints it: key \"name\" { algorithm hmac-sha256; secret \"...\"; };)")
		case toks[0].text != "key" || toks[0].quoted:
			err = fmt.Errorf("line %d: expected a BIND key statement (key \"name\" { ... };) or one [algorithm:]name:secret line, found %q", toks[0].line, toks[0].text)
		default:
			k, err = parseBIND(toks)
		}
	}
	if err != nil {
		return Key{}, err
	}
	k.Name = dns.CanonicalName(k.Name)
	if _, ok := dns.IsDomainName(k.Name); !ok || k.Name == "." {
		return Key{}, fmt.Errorf("key name %q is not a domain name", k.Name)
	}
	if k.Algorithm == "" {
		k.Algorithm = dns.HmacSHA256
	}
	raw, err := base64.StdEncoding.DecodeString(k.Secret)
	if err != nil || len(raw) == 0 {
		return Key{}, fmt.Errorf("key %s: the secret is not base64 (copy it from the server's key file)", k.Name)
	}
	return k, nil
}

type token struct {
	text   string
	quoted bool
	line   int
}

// tokenize splits BIND configuration text into words, quoted strings and
// the punctuation { } ;, dropping comments.
func tokenize(text string) ([]token, error) {
	var toks []token
	line := 1
	for i := 0; i < len(text); {
		c := text[i]
		switch {
		case c == '\n':
			line++
			i++
		case c == ' ' || c == '\t' || c == '\r':
			i++
		case c == '#' || strings.HasPrefix(text[i:], "//"):
			for i < len(text) && text[i] != '\n' {
				i++
			}
		case strings.HasPrefix(text[i:], "/*"):
			end := strings.Index(text[i+2:], "*/")
			if end < 0 {
				return nil, fmt.Errorf("line %d: comment /* is never closed", line)
			}
			line += strings.Count(text[i:i+2+end], "\n")
			i += end + 4
		case c == '{' || c == '}' || c == ';':
			toks = append(toks, token{text: string(c), line: line})
			i++
		case c == '"':
			end := strings.IndexAny(text[i+1:], "\"\n")
			if end < 0 || text[i+1+end] != '"' {
				return nil, fmt.Errorf("line %d: quoted string is never closed", line)
			}
			toks = append(toks, token{text: text[i+1 : i+1+end], quoted: true, line: line})
			i += end + 2
		default:
			j := i
			for j < len(text) && !strings.ContainsRune(" \t\r\n{};\"#", rune(text[j])) && !strings.HasPrefix(text[j:], "//") && !strings.HasPrefix(text[j:], "/*") {
				j++
			}
			toks = append(toks, token{text: text[i:j], line: line})
			i = j
		}
	}
	return toks, nil
}

// parseBIND reads: key NAME { algorithm ALG; secret "SECRET"; };
func parseBIND(toks []token) (Key, error) {
	var k Key
	pos := 0
	next := func(what string) (token, error) {
		if pos >= len(toks) {
			last := toks[len(toks)-1]
			return token{}, fmt.Errorf("line %d: the text ends where %s was expected", last.line, what)
		}
		t := toks[pos]
		pos++
		return t, nil
	}
	expect := func(punct, after string) error {
		t, err := next(fmt.Sprintf("%q after %s", punct, after))
		if err != nil {
			return err
		}
		if t.text != punct || t.quoted {
			return fmt.Errorf("line %d: expected %q after %s, found %q", t.line, punct, after, t.text)
		}
		return nil
	}
	pos = 1 // "key"
	name, err := next("the key's name")
	if err != nil {
		return k, err
	}
	if !name.quoted && (name.text == "{" || name.text == ";" || name.text == "}") {
		return k, fmt.Errorf("line %d: the key has no name", name.line)
	}
	k.Name = name.text
	if err := expect("{", "the key's name"); err != nil {
		return k, err
	}
	for {
		t, err := next(`"algorithm", "secret" or "}"`)
		if err != nil {
			return k, err
		}
		if t.text == "}" && !t.quoted {
			break
		}
		val, err := next("a value for " + t.text)
		if err != nil {
			return k, err
		}
		switch t.text {
		case "algorithm":
			a, ok := algorithm(val.text)
			if !ok {
				return k, fmt.Errorf("line %d: algorithm %q is not supported (use hmac-sha256, hmac-sha512, hmac-sha384, hmac-sha224, hmac-sha1 or hmac-md5)", val.line, val.text)
			}
			k.Algorithm = a
		case "secret":
			k.Secret = val.text
		default:
			return k, fmt.Errorf("line %d: unknown key option %q (a key has algorithm and secret)", t.line, t.text)
		}
		if err := expect(";", t.text); err != nil {
			return k, err
		}
	}
	if err := expect(";", "the key's closing brace"); err != nil {
		return k, err
	}
	if pos < len(toks) {
		return k, fmt.Errorf("line %d: %q after the key (the file must hold one key)", toks[pos].line, toks[pos].text)
	}
	if k.Secret == "" {
		return k, fmt.Errorf("key %s has no secret", k.Name)
	}
	return k, nil
}

// oneLine returns the only line of text that is neither blank nor a #
// comment, and its number, when there is exactly one and it is not a BIND
// statement.
func oneLine(text string) (line string, n int, ok bool) {
	for i, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if ok || strings.ContainsAny(l, "{};\"") || strings.HasPrefix(l, "//") || strings.HasPrefix(l, "/*") {
			return "", 0, false
		}
		line, n, ok = l, i+1, true
	}
	return line, n, ok
}

// parseLine reads [algorithm:]name:secret or name:algorithm:secret.
func parseLine(line string, n int) (Key, error) {
	parts := strings.Split(line, ":")
	switch len(parts) {
	case 2:
		return Key{Name: parts[0], Secret: parts[1]}, nil
	case 3:
		if a, ok := algorithm(parts[0]); ok {
			return Key{Algorithm: a, Name: parts[1], Secret: parts[2]}, nil
		}
		if a, ok := algorithm(parts[1]); ok {
			return Key{Name: parts[0], Algorithm: a, Secret: parts[2]}, nil
		}
		return Key{}, fmt.Errorf("line %d: none of the fields of algorithm:name:secret is a supported algorithm (hmac-sha256, ...)", n)
	}
	return Key{}, fmt.Errorf("line %d: expected [algorithm:]name:secret, found %d fields", n, len(parts))
}
