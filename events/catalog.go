package events

import (
	"fmt"
	"reflect"
	"strings"
)

// Kind says how a catalog type travels.
type Kind int

// The kinds of catalog type. The zero Kind is none of them, so a zero Type
// is recognisably not from the catalog.
const (
	// Event is a fact, published on lifeboat.event.<aggregate>.<name> to
	// the LIFEBOAT_EVENTS stream, consumed by every interested service.
	Event Kind = iota + 1
	// Command is a request to one service, published on
	// lifeboat.cmd.<service>.<verb> to the LIFEBOAT_COMMANDS work queue.
	Command
	// Heartbeat is HostHeartbeat, published on lifeboat.heartbeat.<host>
	// over core NATS, on no stream.
	Heartbeat
)

// String names the kind in lower case: event, command, heartbeat.
func (k Kind) String() string {
	switch k {
	case Event:
		return "event"
	case Command:
		return "command"
	case Heartbeat:
		return "heartbeat"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Type describes one message of the catalog.
type Type struct {
	// Name is the Go type's name, e.g. "HostDown".
	Name string
	// Kind says how it travels.
	Kind Kind
	// CEType is its CloudEvents type, e.g. "io.lifeboat.host.down.v1".
	CEType string
	// Subject is the subject it is published on, e.g.
	// "lifeboat.event.host.down"; for HostHeartbeat, the prefix
	// "lifeboat.heartbeat" (see HeartbeatSubject).
	Subject string
	// Service is, for a command, the service that consumes it; empty for
	// events.
	Service string

	goType reflect.Type
}

// New returns a pointer to a new zero value of t's struct, e.g.
// *HostDown, or nil for a Type not from the catalog.
func (t Type) New() any {
	if t.goType == nil {
		return nil
	}
	return reflect.New(t.goType).Interface()
}

// SchemaFile is the name of t's JSON Schema in events/schema/,
// e.g. "io.lifeboat.host.down.v1.json".
func (t Type) SchemaFile() string { return t.CEType + ".json" }

// SchemaID is the $id of t's JSON Schema.
func (t Type) SchemaID() string { return "https://lifeboat.dev/events/schema/" + t.SchemaFile() }

// The catalog and its indexes, built from registry as package variables
// (not in an init function) so that the schemas, compiled in another
// package variable's initializer, see them.
var catalog, bySubject, byCEType, byGoType = buildCatalog()

func buildCatalog() ([]Type, map[string]Type, map[string]Type, map[reflect.Type]Type) {
	var (
		all       []Type
		bySubject = map[string]Type{}
		byCEType  = map[string]Type{}
		byGoType  = map[reflect.Type]Type{}
	)
	for _, r := range registry {
		gt := reflect.TypeOf(r.value)
		t := Type{
			Name:    gt.Name(),
			Kind:    r.kind,
			CEType:  ceTypeOf(r.kind, r.first, r.name),
			Subject: subjectOf(r.kind, r.first, r.name),
			goType:  gt,
		}
		if r.kind == Command {
			t.Service = r.first
		}
		// Two entries sharing a key would make lookups ambiguous: a
		// programming error, caught the first time anything runs.
		if _, dup := bySubject[t.Subject]; dup {
			panic("events: duplicate subject " + t.Subject)
		}
		if _, dup := byCEType[t.CEType]; dup {
			panic("events: duplicate CloudEvents type " + t.CEType)
		}
		if _, dup := byGoType[gt]; dup {
			panic("events: duplicate Go type " + t.Name)
		}
		all = append(all, t)
		bySubject[t.Subject] = t
		byCEType[t.CEType] = t
		byGoType[gt] = t
	}
	return all, bySubject, byCEType, byGoType
}

// Catalog returns every type of the catalog in a stable order: DESIGN §2's,
// events first, then commands. The slice is the caller's.
func Catalog() []Type {
	return append([]Type(nil), catalog...)
}

// BySubject finds the type published on subject, exactly; any
// lifeboat.heartbeat.<host> is HostHeartbeat, and a command addressed to a
// host (lifeboat.cmd.<service>.<host>.<verb>) is the command's type. ok is false for a subject
// the catalog does not know.
func BySubject(subject string) (t Type, ok bool) {
	if host, found := strings.CutPrefix(subject, HeartbeatPrefix+"."); found {
		if host == "" {
			return Type{}, false
		}
		return bySubject[HeartbeatPrefix], true
	}
	if subject == HeartbeatPrefix {
		return Type{}, false
	}
	t, ok = bySubject[subject]
	if !ok {
		// An addressed command, lifeboat.cmd.<service>.<host>.<verb>.
		t, ok = bySubject[unaddressed(subject)]
	}
	return t, ok
}

// ByCEType finds the type of a CloudEvents type such as
// "io.lifeboat.host.down.v1". ok is false for one the catalog does not know.
func ByCEType(ce string) (t Type, ok bool) {
	t, ok = byCEType[ce]
	return t, ok
}

// TypeOf finds the type of v, a catalog struct or a pointer to one, e.g.
// TypeOf(&events.HostDown{}). ok is false for anything else.
func TypeOf(v any) (t Type, ok bool) {
	gt := reflect.TypeOf(v)
	if gt == nil {
		return Type{}, false
	}
	if gt.Kind() == reflect.Pointer {
		gt = gt.Elem()
	}
	t, ok = byGoType[gt]
	return t, ok
}

// SubjectOf is the subject of the catalog type T, e.g.
// SubjectOf[events.HostDown]() = "lifeboat.event.host.down". It panics when
// T is not in the catalog: that is a programming error, found at start.
func SubjectOf[T any]() string {
	t, ok := TypeOf((*T)(nil))
	if !ok {
		var zero T
		panic(fmt.Sprintf("events: %T is not in the catalog", zero))
	}
	return t.Subject
}
