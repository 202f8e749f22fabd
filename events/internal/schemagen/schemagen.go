// Package schemagen generates the events' JSON Schemas from their Go
// structs with invopop/jsonschema. cmd genschema writes them to
// events/schema/ and TestSchemasUpToDate compares them with the files
// checked in; both call Generate, so they cannot disagree.
package schemagen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/invopop/jsonschema"

	"lifeboat.dev/events"
)

// Generate returns the JSON Schema of every catalog type, pretty-printed,
// keyed by file name (<cetype>.json). Field and type descriptions come from
// the Go doc comments of the package in srcDir, which must be the events
// directory given as a relative path (as go generate and go test run).
func Generate(srcDir string) (map[string][]byte, error) {
	r := &jsonschema.Reflector{
		// Required is what the struct tags say, never implied by a
		// missing omitempty: the required set is a contract decision.
		RequiredFromJSONSchemaTags: true,
		// Old consumers must accept the fields newer producers add.
		AllowAdditionalProperties: true,
		ExpandedStruct:            true,
	}
	if err := r.AddGoComments("lifeboat.dev/events", srcDir, jsonschema.WithFullComment()); err != nil {
		return nil, fmt.Errorf("schemagen: read doc comments in %s: %w", srcDir, err)
	}
	out := map[string][]byte{}
	for _, t := range events.Catalog() {
		s := r.ReflectFromType(reflect.TypeOf(t.New()).Elem())
		s.ID = jsonschema.ID(t.SchemaID())
		s.Title = t.Name
		allowAdditional(s)
		for _, d := range s.Definitions {
			allowAdditional(d)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			return nil, fmt.Errorf("schemagen: encode %s: %w", t.Name, err)
		}
		out[t.SchemaFile()] = buf.Bytes()
	}
	return out, nil
}

// allowAdditional says additionalProperties: true explicitly on every
// object schema, so a reader of the file sees the rule.
func allowAdditional(s *jsonschema.Schema) {
	if s == nil {
		return
	}
	if s.Type == "object" && s.AdditionalProperties == nil {
		s.AdditionalProperties = jsonschema.TrueSchema
	}
	if s.Properties != nil {
		for p := s.Properties.Oldest(); p != nil; p = p.Next() {
			allowAdditional(p.Value)
		}
	}
	allowAdditional(s.Items)
}
