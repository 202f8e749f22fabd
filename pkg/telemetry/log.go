package telemetry

import (
	"context"
	"io"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys for the span a record was logged in.
const (
	TraceIDKey = "trace_id"
	SpanIDKey  = "span_id"
)

// NewLogger returns a logger writing JSON (json true) or logfmt-style text to
// w at level and above. Every record logged with a context that holds a span
// (slog.InfoContext and friends) carries trace_id and span_id at the top
// level, so a log line leads to its trace.
func NewLogger(w io.Writer, level slog.Level, json bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if json {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(NewTraceHandler(h))
}

// NewTraceHandler wraps h so records logged inside a span carry trace_id and
// span_id.
func NewTraceHandler(h slog.Handler) slog.Handler {
	return &traceHandler{h: h, root: h}
}

// traceHandler adds the span's ids to each record. The ids belong at the top
// level even under WithGroup, so it remembers the handler as it was before
// the first group (root) and the calls made since (since), and replays them
// over root plus the ids when a grouped logger logs inside a span.
type traceHandler struct {
	h     slog.Handler                      // the handler with every With* applied
	root  slog.Handler                      // the handler before the first WithGroup
	since []func(slog.Handler) slog.Handler // With* calls from the first WithGroup on
}

// Enabled reports whether the wrapped handler logs at level.
func (t *traceHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return t.h.Enabled(ctx, level)
}

// Handle logs r, with the ids of ctx's span when it has a valid one.
func (t *traceHandler) Handle(ctx context.Context, r slog.Record) error {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return t.h.Handle(ctx, r)
	}
	ids := []slog.Attr{slog.String(TraceIDKey, sc.TraceID().String()), slog.String(SpanIDKey, sc.SpanID().String())}
	if len(t.since) == 0 {
		r.AddAttrs(ids...)
		return t.h.Handle(ctx, r)
	}
	h := t.root.WithAttrs(ids)
	for _, f := range t.since {
		h = f(h)
	}
	return h.Handle(ctx, r)
}

// WithAttrs returns a handler that adds attrs to every record.
func (t *traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return t
	}
	n := &traceHandler{h: t.h.WithAttrs(attrs), root: t.root}
	if len(t.since) == 0 {
		n.root = n.h
		return n
	}
	n.since = append(t.since[:len(t.since):len(t.since)], func(h slog.Handler) slog.Handler { return h.WithAttrs(attrs) })
	return n
}

// WithGroup returns a handler that puts later attributes under name.
func (t *traceHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return t
	}
	return &traceHandler{
		h:     t.h.WithGroup(name),
		root:  t.root,
		since: append(t.since[:len(t.since):len(t.since)], func(h slog.Handler) slog.Handler { return h.WithGroup(name) }),
	}
}
