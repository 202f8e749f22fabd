package events_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"lifeboat.dev/events"
	"lifeboat.dev/events/internal/schemagen"
)

// The checked-in schemas are exactly what the structs generate: a struct
// changed without `make gen` fails here, naming the file.
func TestSchemasUpToDate(t *testing.T) {
	gen, err := schemagen.Generate(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range events.Catalog() {
		name := typ.SchemaFile()
		want, ok := gen[name]
		if !ok {
			t.Errorf("no schema generated for %s", typ.Name)
			continue
		}
		path := filepath.Join("schema", name)
		got, err := os.ReadFile(path)
		if os.IsNotExist(err) {
			t.Errorf("%s is missing (the schema of %s): run `make gen` and commit it", path, typ.Name)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date with the %s struct (%s): run `make gen` and commit it", path, typ.Name, firstDiff(got, want))
		}
	}
	files, err := filepath.Glob(filepath.Join("schema", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, ok := gen[filepath.Base(f)]; !ok {
			t.Errorf("%s belongs to no catalog type: run `make gen` to remove it", f)
		}
	}
}

// firstDiff describes the first line where the checked-in file differs.
func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d is %q, the struct says %q", i+1, strings.TrimSpace(gl), strings.TrimSpace(wl))
		}
	}
	return "they differ"
}

// Every catalog type's schema compiles and accepts properties it does not
// know, the rule that lets the catalog grow.
func TestEverySchemaAcceptsUnknownProperties(t *testing.T) {
	for _, typ := range events.Catalog() {
		data, err := os.ReadFile(filepath.Join("schema", typ.SchemaFile()))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte(`"additionalProperties": true`)) || bytes.Contains(data, []byte(`"additionalProperties": false`)) {
			t.Errorf("%s does not say additionalProperties: true", typ.SchemaFile())
		}
		err = events.Validate(typ, []byte(`{"surely_no_type_has_this_field": 1}`))
		if err != nil && strings.Contains(err.Error(), "surely_no_type_has_this_field") {
			t.Errorf("%s refuses an unknown property: %v", typ.Name, err)
		}
		if err != nil && !strings.Contains(err.Error(), "missing required property") && !strings.Contains(err.Error(), "needs one of") {
			t.Errorf("%s: unexpected error for a body of only an unknown property: %v", typ.Name, err)
		}
	}
}
