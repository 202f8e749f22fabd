// Command genschema writes the events' JSON Schemas, one file per catalog
// type, into a directory (events/schema/), and removes schema files no type
// has any more. Run it with `go generate ./...` in events/ or `make gen`.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"lifeboat.dev/events/internal/schemagen"
)

func main() {
	out := flag.String("out", "schema", "directory to write the schemas into")
	src := flag.String("src", ".", "the events package directory, relative (for doc comments)")
	flag.Parse()
	if err := run(*src, *out); err != nil {
		fmt.Fprintln(os.Stderr, "genschema:", err)
		os.Exit(1)
	}
}

func run(src, out string) error {
	files, err := schemagen.Generate(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for name, data := range files {
		path := filepath.Join(out, name)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
			continue
		}
		if err := writeFile(path, data); err != nil {
			return err
		}
		slog.Info("wrote schema", slog.String("file", path))
	}
	existing, err := filepath.Glob(filepath.Join(out, "*.json"))
	if err != nil {
		return err
	}
	for _, path := range existing {
		if _, ok := files[filepath.Base(path)]; !ok && strings.HasPrefix(filepath.Base(path), "io.lifeboat.") {
			if err := os.Remove(path); err != nil {
				return err
			}
			slog.Info("removed stale schema", slog.String("file", path))
		}
	}
	return nil
}

// writeFile writes through a temporary file and a rename, so an
// interrupted run never leaves a half-written schema behind.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".schema-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
