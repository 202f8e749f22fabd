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
// name:algorithm:secret. The algorithm defaults to hmac-sha256.
//
// Errors say which line is wrong and what is wrong with it, and never
// quote the secret: since a broken file may hold the secret anywhere (a
// stray line, a missing keyword, fields in the wrong order), they quote no
// text of the file but the words of the format (key, algorithm, secret,
// BIND's statements, algorithm names) and punctuation. The key's name is
// not quoted either: in a line whose fields are out of order, the "name"
// is the secret.
func ParseKey(text string) (Key, error) {
	var (
		k   parsed
		err error
	)
	if line, n, ok := oneLine(text); ok {
		k, err = parseLine(line, n)
	} else if n1, n2, ok := strayLine(text); ok {
		err = fmt.Errorf("line %d: a second line after the [algorithm:]name:secret line %d (the file must hold one key: delete line %d or make it a # comment)", n2, n1, n2)
	} else {
		var toks []token
		toks, err = tokenize(text)
		switch {
		case err != nil:
		case len(toks) == 0:
			err = errors.New("no key in it (write one as tsig-keygen prints it: key \"name\" { algorithm hmac-sha256; secret \"...\"; };)")
		case toks[0].text != "key" || toks[0].quoted:
			err = fmt.Errorf("line %d: expected a BIND key statement (key \"name\" { ... };) or one [algorithm:]name:secret line, found %s", toks[0].line, describe(toks[0]))
		default:
			k, err = parseBIND(toks)
		}
	}
	if err != nil {
		return Key{}, err
	}
	k.Name = dns.CanonicalName(k.Name)
	if _, ok := dns.IsDomainName(k.Name); !ok || k.Name == "." {
		return Key{}, fmt.Errorf("line %d: the key's name is not a domain name", k.nameLine)
	}
	if k.Algorithm == "" {
		k.Algorithm = dns.HmacSHA256
	}
	raw, err := base64.StdEncoding.DecodeString(k.Secret)
	if err != nil || len(raw) == 0 {
		return Key{}, fmt.Errorf("line %d: the secret is not base64 (copy it from the server's key file)", k.secretLine)
	}
	return k.Key, nil
}

// parsed is a key with the lines its name and secret were read from, for
// errors that must not quote them.
type parsed struct {
	Key
	nameLine, secretLine int
}

// vocabulary is the text of a key file that an error may quote: the words
// of the key statement, BIND's other statements (a named.conf given in
// place of a key file), and TSIG algorithm names (RFC 8945). A word of the
// format cannot hide a secret, and a secret spelled as one (a three-byte
// key "view") would be no secret.
var vocabulary = map[string]bool{
	"key": true, "algorithm": true, "secret": true,
	"acl": true, "controls": true, "dnssec-policy": true, "http": true, "include": true,
	"key-store": true, "logging": true, "managed-keys": true, "masters": true,
	"options": true, "parental-agents": true, "plugin": true, "primaries": true,
	"server": true, "statistics-channels": true, "template": true, "tls": true,
	"trust-anchors": true, "trusted-keys": true, "view": true, "zone": true,
	"gss-tsig": true, "hmac-sha256-128": true, "hmac-sha384-192": true, "hmac-sha512-256": true,
}

// describe says what a token is, for an error: its text when that is
// punctuation or a word of the format, and only its kind otherwise, since
// the token may be the secret.
func describe(t token) string {
	_, isAlgorithm := algorithm(t.text)
	switch {
	case t.quoted:
		return "a quoted string (not shown: it may be the secret)"
	case t.text == "{" || t.text == "}" || t.text == ";" || vocabulary[strings.ToLower(t.text)] || isAlgorithm:
		return fmt.Sprintf("%q", t.text)
	case strings.Contains(t.text, ":"):
		return "a word with colons, such as an [algorithm:]name:secret line (not shown: it holds the secret)"
	}
	return "a word (not shown: it may be the secret)"
}

// strayLine reports the case of a name:secret line followed by more lines:
// the numbers of the first two lines that are neither blank nor a #
// comment, when the first has a colon and no BIND punctuation.
func strayLine(text string) (first, second int, ok bool) {
	for i, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if first == 0 {
			if !strings.Contains(l, ":") || strings.ContainsAny(l, "{};\"") || strings.HasPrefix(l, "//") || strings.HasPrefix(l, "/*") {
				return 0, 0, false
			}
			first = i + 1
			continue
		}
		return first, i + 1, true
	}
	return 0, 0, false
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
func parseBIND(toks []token) (parsed, error) {
	var k parsed
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
			return fmt.Errorf("line %d: expected %q after %s, found %s", t.line, punct, after, describe(t))
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
	k.Name, k.nameLine = name.text, name.line
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
		if t.quoted || (t.text != "algorithm" && t.text != "secret") {
			return k, fmt.Errorf("line %d: unknown key option %s (a key has algorithm and secret)", t.line, describe(t))
		}
		opt := fmt.Sprintf("%q", t.text)
		val, err := next("a value for " + opt)
		if err != nil {
			return k, err
		}
		switch t.text {
		case "algorithm":
			a, ok := algorithm(val.text)
			if !ok {
				return k, fmt.Errorf("line %d: algorithm %s is not supported (use hmac-sha256, hmac-sha512, hmac-sha384, hmac-sha224, hmac-sha1 or hmac-md5)", val.line, describeAlgorithm(val))
			}
			k.Algorithm = a
		case "secret":
			k.Secret, k.secretLine = val.text, val.line
		}
		if err := expect(";", opt); err != nil {
			return k, err
		}
	}
	if err := expect(";", "the key's closing brace"); err != nil {
		return k, err
	}
	if pos < len(toks) {
		return k, fmt.Errorf("line %d: %s after the key (the file must hold one key)", toks[pos].line, describe(toks[pos]))
	}
	if k.Secret == "" {
		return k, fmt.Errorf("line %d: the key has no secret", toks[0].line)
	}
	return k, nil
}

// describeAlgorithm is describe for the value of algorithm, which also
// quotes a name of the form hmac-xxx in lower case (hmac-sha3): a secret,
// being base64, has no hyphen.
func describeAlgorithm(t token) string {
	rest, ok := strings.CutPrefix(t.text, "hmac-")
	if !t.quoted && ok && rest != "" && strings.Trim(rest, "abcdefghijklmnopqrstuvwxyz0123456789.-") == "" {
		return fmt.Sprintf("%q", t.text)
	}
	return describe(t)
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
func parseLine(line string, n int) (parsed, error) {
	parts := strings.Split(line, ":")
	switch len(parts) {
	case 2:
		return parsed{Key{Name: parts[0], Secret: parts[1]}, n, n}, nil
	case 3:
		if a, ok := algorithm(parts[0]); ok {
			return parsed{Key{Algorithm: a, Name: parts[1], Secret: parts[2]}, n, n}, nil
		}
		if a, ok := algorithm(parts[1]); ok {
			return parsed{Key{Name: parts[0], Algorithm: a, Secret: parts[2]}, n, n}, nil
		}
		return parsed{}, fmt.Errorf("line %d: none of the fields of algorithm:name:secret is a supported algorithm (hmac-sha256, ...)", n)
	}
	return parsed{}, fmt.Errorf("line %d: expected [algorithm:]name:secret, found %d fields", n, len(parts))
}
