package files

import (
	"fmt"
	"path"
	"strings"
)

// pattern is one include or exclude pattern, in rsync's spirit:
//
//   - "logs/" (a trailing slash) matches directories only;
//   - "*.tmp", "logs/", "license.dat" (no other slash) match a base name at
//     any depth;
//   - "/data", "data/backups/" (a leading or inner slash) match the whole
//     path from the root (a leading slash is dropped);
//   - *, ? and [...] are path.Match globs: * never crosses a slash.
type pattern struct {
	glob     string
	anchored bool
	dirOnly  bool
}

// parsePatterns checks and compiles patterns; the error names the bad one.
func parsePatterns(ps []string) ([]pattern, error) {
	out := make([]pattern, 0, len(ps))
	for _, s := range ps {
		p := pattern{glob: s}
		if strings.HasSuffix(p.glob, "/") {
			p.dirOnly = true
			p.glob = strings.TrimRight(p.glob, "/")
		}
		if strings.HasPrefix(p.glob, "/") {
			p.anchored = true
			p.glob = strings.TrimLeft(p.glob, "/")
		}
		if strings.Contains(p.glob, "/") {
			p.anchored = true
		}
		if p.glob == "" {
			return nil, fmt.Errorf("pattern %q matches nothing", s)
		}
		if _, err := path.Match(p.glob, ""); err != nil {
			return nil, fmt.Errorf("pattern %q: %w", s, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// match reports whether p matches the slash-separated path rel from the
// root.
func (p pattern) match(rel string, isDir bool) bool {
	if p.dirOnly && !isDir {
		return false
	}
	name := rel
	if !p.anchored {
		name = path.Base(rel)
	}
	ok, _ := path.Match(p.glob, name)
	return ok
}

// anyMatch reports whether any of ps matches rel.
func anyMatch(ps []pattern, rel string, isDir bool) bool {
	for _, p := range ps {
		if p.match(rel, isDir) {
			return true
		}
	}
	return false
}

// selector decides, path by path in walk order (parents first), what a
// Kind's patterns select.
type selector struct {
	include, exclude []pattern
	// inDirs holds the directories that match include, or lie under one.
	inDirs map[string]bool
}

func newSelector(k *Kind) *selector {
	return &selector{include: k.include, exclude: k.exclude, inDirs: map[string]bool{}}
}

// classify says whether rel (not ".") is excluded, and if not, whether it is
// included: a directory that is neither may still hold included entries.
func (s *selector) classify(rel string, isDir bool) (excluded, included bool) {
	if anyMatch(s.exclude, rel, isDir) {
		return true, false
	}
	included = len(s.include) == 0 || s.inDirs[path.Dir(rel)] || anyMatch(s.include, rel, isDir)
	if included && isDir {
		s.inDirs[rel] = true
	}
	return false, included
}
