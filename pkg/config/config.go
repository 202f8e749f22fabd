// Package config loads lifeboat's YAML configuration strictly: an unknown
// key, a value of the wrong type or a value that fails validation is
// reported with the file, the line and the key's path, so an operator can go
// straight to it.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Error is a configuration problem at a place in the file.
type Error struct {
	File string
	Line int    // 0 when the key is absent from the file
	Key  string // dotted path, e.g. "nats.replicas"
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Key != "" {
		b.WriteString(": " + e.Key)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// File is a loaded configuration file, remembering where each key was.
type File struct {
	Path  string
	lines map[string]int
}

// Load reads path into v (a pointer to a struct with yaml tags), refusing
// unknown keys. v keeps whatever defaults it held for keys the file omits.
func Load(path string, v any) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data, v)
}

// Parse is Load for data already read; path is used in messages.
func Parse(path string, data []byte, v any) (*File, error) {
	f := &File{Path: path, lines: map[string]int{}}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return f, nil // an empty file: all defaults
		}
		return nil, f.yamlError(err)
	}
	if len(root.Content) == 0 {
		return f, nil
	}
	doc := root.Content[0]
	if err := f.check(doc, reflect.TypeOf(v).Elem(), ""); err != nil {
		return nil, err
	}
	if err := doc.Decode(v); err != nil {
		return nil, f.yamlError(err)
	}
	return f, nil
}

// Errorf reports a problem with key (a dotted path) at its line.
func (f *File) Errorf(key, format string, args ...any) error {
	return &Error{File: f.Path, Line: f.lines[key], Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Has says whether the file sets key.
func (f *File) Has(key string) bool { _, ok := f.lines[key]; return ok }

// yamlError turns yaml.v3's "yaml: line 3: ..." messages into ours.
func (f *File) yamlError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	line := 0
	if strings.HasPrefix(msg, "line ") {
		rest := msg[len("line "):]
		if i := strings.Index(rest, ":"); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line, msg = n, strings.TrimSpace(rest[i+1:])
			}
		}
	}
	key := ""
	for k, l := range f.lines {
		if l == line && len(k) > len(key) {
			key = k
		}
	}
	return &Error{File: f.Path, Line: line, Key: key, Msg: msg}
}

var durationType = reflect.TypeOf(time.Duration(0))

// check walks the node against t, recording every key's line and refusing
// keys t does not have.
func (f *File) check(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if path != "" {
		if _, ok := f.lines[path]; !ok {
			f.lines[path] = n.Line
		}
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeOf(time.Time{}) || reflect.PointerTo(t).Implements(unmarshalerType) {
			return nil
		}
		if n.Kind != yaml.MappingNode {
			if n.Tag == "!!null" {
				return nil
			}
			return &Error{File: f.Path, Line: n.Line, Key: path, Msg: fmt.Sprintf("want a mapping of keys, got %s", describe(n))}
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := join(path, k.Value)
			f.lines[key] = k.Line
			ft, ok := fields[k.Value]
			if !ok {
				return &Error{File: f.Path, Line: k.Line, Key: key, Msg: fmt.Sprintf("unknown key (known keys here: %s)", strings.Join(sortedKeys(fields), ", "))}
			}
			if err := f.check(val, ft, key); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			if n.Tag == "!!null" {
				return nil
			}
			return &Error{File: f.Path, Line: n.Line, Key: path, Msg: fmt.Sprintf("want a mapping, got %s", describe(n))}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := join(path, k.Value)
			f.lines[key] = k.Line
			if err := f.check(val, t.Elem(), key); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil
		}
		if n.Kind != yaml.SequenceNode {
			if n.Tag == "!!null" {
				return nil
			}
			return &Error{File: f.Path, Line: n.Line, Key: path, Msg: fmt.Sprintf("want a list, got %s", describe(n))}
		}
		for i, item := range n.Content {
			if err := f.check(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	default:
		if n.Kind != yaml.ScalarNode {
			return &Error{File: f.Path, Line: n.Line, Key: path, Msg: fmt.Sprintf("want a single value, got %s", describe(n))}
		}
		if t == durationType && n.Tag != "!!null" {
			if _, err := time.ParseDuration(n.Value); err != nil {
				return &Error{File: f.Path, Line: n.Line, Key: path, Msg: fmt.Sprintf("%q is not a duration (use e.g. 30s, 5m, 2h)", n.Value)}
			}
		}
	}
	return nil
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			for k, v := range yamlFields(sf.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		out[name] = sf.Type
	}
	return out
}

func sortedKeys(m map[string]reflect.Type) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}
