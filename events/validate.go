package events

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Sentinel errors of Validate and Decode, for errors.Is: a dead letter's
// reason class, or a CLI's choice of message.
var (
	// ErrNotJSON: the body is not one JSON value.
	ErrNotJSON = errors.New("not JSON")
	// ErrSchema: the body is JSON but does not match the type's schema.
	ErrSchema = errors.New("does not match schema")
)

// SchemaError says how a body fails its type's schema. It matches ErrSchema
// with errors.Is.
type SchemaError struct {
	// Type is the catalog type's Go name, e.g. "HostDown".
	Type string
	// Problems lists each violation as "<JSON pointer>: <what is wrong>",
	// e.g. "/host: missing required property", sorted.
	Problems []string
}

// Error reads like "HostDown: /host: missing required property".
func (e *SchemaError) Error() string {
	return e.Type + ": " + strings.Join(e.Problems, "; ")
}

// Is makes errors.Is(err, ErrSchema) true.
func (e *SchemaError) Is(target error) bool { return target == ErrSchema }

// maxProblems bounds a SchemaError, which ends up in a dead letter's header.
const maxProblems = 10

//go:embed schema
var schemaFS embed.FS

// schemas holds the compiled schema of each catalog type by CEType, and
// schemaErrs why one could not be compiled. A broken or missing schema
// fails Validate for that type only (and TestSchemasUpToDate), rather than
// the whole program at init, so `make gen` can always run to repair it.
var schemas, schemaErrs = compileSchemas()

func compileSchemas() (map[string]*jsonschema.Schema, map[string]error) {
	c := jsonschema.NewCompiler()
	// Times are RFC 3339: say so at validation, not as an obscure
	// unmarshal error later.
	c.AssertFormat()
	errs := map[string]error{}
	for _, t := range catalog {
		f, err := schemaFS.ReadFile("schema/" + t.SchemaFile())
		if err != nil {
			errs[t.CEType] = fmt.Errorf("events: no schema for %s (%s): run make gen", t.Name, t.SchemaFile())
			continue
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(f))
		if err == nil {
			err = c.AddResource(t.SchemaID(), doc)
		}
		if err != nil {
			errs[t.CEType] = fmt.Errorf("events: schema %s: %w (run make gen)", t.SchemaFile(), err)
		}
	}
	out := map[string]*jsonschema.Schema{}
	for _, t := range catalog {
		if errs[t.CEType] != nil {
			continue
		}
		s, err := c.Compile(t.SchemaID())
		if err != nil {
			errs[t.CEType] = fmt.Errorf("events: schema %s: %w (run make gen)", t.SchemaFile(), err)
			continue
		}
		out[t.CEType] = s
	}
	return out, errs
}

// Validate checks body against t's JSON Schema (events/schema/, embedded).
// The error wraps ErrNotJSON when body is not JSON at all, or is a
// *SchemaError (errors.Is(err, ErrSchema)) naming every violation.
// Properties the schema does not know are accepted.
func Validate(t Type, body []byte) error {
	_, err := validate(t, body)
	return err
}

// Decode validates body against t's schema and decodes it into a new value
// of t's struct, returned as a pointer (e.g. *HostDown). Errors are those
// of Validate; a body that passes the schema but does not fit the Go type
// (an integer out of range, a time Go cannot represent) is a *SchemaError.
func Decode(t Type, body []byte) (any, error) {
	doc, err := validate(t, body)
	if err != nil {
		return nil, err
	}
	// encoding/json matches keys case-insensitively: an extra "Host" key
	// would overwrite the validated "host". Drop such keys first.
	if pruneFolded(doc, t.goType) {
		if body, err = json.Marshal(doc); err != nil {
			return nil, fmt.Errorf("events: re-encode %s: %w", t.Name, err)
		}
	}
	v := t.New()
	if err := json.Unmarshal(body, v); err != nil {
		return nil, &SchemaError{Type: t.Name, Problems: []string{"does not fit the Go type: " + err.Error()}}
	}
	return v, nil
}

// validate parses body (numbers kept exact) and validates it, returning
// the parsed document.
func validate(t Type, body []byte) (any, error) {
	if t.goType == nil {
		return nil, fmt.Errorf("events: %q is not a catalog type", t.Name)
	}
	s := schemas[t.CEType]
	if s == nil {
		if err := schemaErrs[t.CEType]; err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("events: no compiled schema for %s: run make gen", t.Name)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, fmt.Errorf("%w: empty body, want a JSON object", ErrNotJSON)
	}
	var doc any
	if err := unmarshalNumbers(body, &doc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	err := s.Validate(doc)
	if err == nil {
		return doc, nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return nil, &SchemaError{Type: t.Name, Problems: []string{err.Error()}}
	}
	return nil, &SchemaError{Type: t.Name, Problems: problems(ve, s)}
}

// unmarshalNumbers decodes one JSON value, numbers as json.Number so that
// large integers are checked exactly. Its errors read as encoding/json's.
func unmarshalNumbers(body []byte, v *any) error {
	// One pass for what is valid; only what is not is read again.
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if err := d.Decode(v); err == nil && len(bytes.TrimSpace(body[d.InputOffset():])) == 0 {
		return nil
	}
	// json.Unmarshal describes the syntax error, or the data after the
	// value, precisely.
	var discard any
	if err := json.Unmarshal(body, &discard); err != nil {
		return err
	}
	return errors.New("invalid JSON")
}

var printer = message.NewPrinter(language.English)

// problems flattens a validation error tree into sorted, bounded lines of
// "<pointer>: <what is wrong>".
func problems(ve *jsonschema.ValidationError, root *jsonschema.Schema) []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		loc := pointer(e.InstanceLocation)
		switch k := e.ErrorKind.(type) {
		case *kind.Required:
			for _, m := range k.Missing {
				add(pointer(append(append([]string(nil), e.InstanceLocation...), m)) + ": missing required property")
			}
			return
		case *kind.OneOf, *kind.AnyOf:
			// Alternatives made only of required properties (one of job
			// or host) read best as the properties to choose from.
			if names := alternatives(e, root); len(names) > 0 {
				if one, isOne := k.(*kind.OneOf); isOne && one.Subschemas != nil {
					add(loc + ": give only one of the properties " + strings.Join(names, ", "))
				} else {
					add(loc + ": needs one of the properties " + strings.Join(names, ", "))
				}
				return
			}
		}
		// Containers (the schema, a $ref, allOf...): the causes say what
		// is wrong.
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		add(loc + ": " + e.ErrorKind.LocalizedString(printer))
	}
	walk(ve)
	sort.Strings(out)
	if len(out) > maxProblems {
		n := len(out) - maxProblems
		out = append(out[:maxProblems], fmt.Sprintf("and %d more", n))
	}
	if len(out) == 0 {
		out = []string{ve.Error()}
	}
	return out
}

// alternatives names the properties of a oneOf/anyOf failure whose
// alternatives each require properties and nothing else, or returns nil.
func alternatives(e *jsonschema.ValidationError, root *jsonschema.Schema) []string {
	var names []string
	if len(e.Causes) > 0 {
		for _, c := range e.Causes {
			for _, cc := range append([]*jsonschema.ValidationError{c}, c.Causes...) {
				if r, ok := cc.ErrorKind.(*kind.Required); ok {
					names = append(names, r.Missing...)
				}
			}
		}
		return dedupe(names)
	}
	// Several alternatives matched and there are no causes: read the
	// alternatives from the schema, when the failure is at the top level.
	if len(e.InstanceLocation) != 0 || root == nil {
		return nil
	}
	alts := root.OneOf
	if _, isAny := e.ErrorKind.(*kind.AnyOf); isAny {
		alts = root.AnyOf
	}
	for _, a := range alts {
		names = append(names, a.Required...)
	}
	return dedupe(names)
}

func dedupe(s []string) []string {
	var out []string
	for _, v := range s {
		found := false
		for _, o := range out {
			found = found || o == v
		}
		if !found {
			out = append(out, v)
		}
	}
	return out
}

// pointer renders an instance location as a JSON pointer, "(root)" for the
// body itself.
func pointer(tokens []string) string {
	if len(tokens) == 0 {
		return "(root)"
	}
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(t))
	}
	return b.String()
}

var timeType = reflect.TypeOf(time.Time{})

// pruneFolded deletes, from the objects of doc that decode into structs of
// type gt, the keys encoding/json would match to a field only by case
// folding (e.g. "Host" for "host"), and reports whether it deleted any.
func pruneFolded(doc any, gt reflect.Type) bool {
	for gt.Kind() == reflect.Pointer {
		gt = gt.Elem()
	}
	changed := false
	switch v := doc.(type) {
	case map[string]any:
		if gt.Kind() != reflect.Struct || gt == timeType {
			return false
		}
		fields := jsonFields(gt)
		for key, val := range v {
			if ft, exact := fields[key]; exact {
				changed = pruneFolded(val, ft) || changed
				continue
			}
			for name := range fields {
				if strings.EqualFold(name, key) {
					delete(v, key)
					changed = true
					break
				}
			}
		}
	case []any:
		if gt.Kind() != reflect.Slice && gt.Kind() != reflect.Array {
			return false
		}
		for _, e := range v {
			changed = pruneFolded(e, gt.Elem()) || changed
		}
	}
	return changed
}

// jsonFields maps the JSON names of a struct's exported fields to their
// types. The catalog's structs have flat fields, each with a json tag.
func jsonFields(gt reflect.Type) map[string]reflect.Type {
	if f, ok := fieldsOf.Load(gt); ok {
		return f.(map[string]reflect.Type)
	}
	f := structFields(gt)
	fieldsOf.Store(gt, f)
	return f
}

// fieldsOf caches jsonFields by type: every consumed event asks it, and
// reflection over the same struct gives the same answer every time.
var fieldsOf sync.Map // reflect.Type → map[string]reflect.Type (read only)

func structFields(gt reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type, gt.NumField())
	for i := range gt.NumField() {
		f := gt.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}
