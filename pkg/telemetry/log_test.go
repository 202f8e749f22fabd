package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// inSpan returns a context holding a fresh sampled span; it uses its own
// provider, so these tests need no global setup and run in parallel.
func inSpan(t *testing.T) (context.Context, trace.SpanContext) {
	t.Helper()
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("test").Start(context.Background(), "op")
	t.Cleanup(func() { span.End() })
	return ctx, span.SpanContext()
}

// decodeLines parses JSON log output, one record a line.
func decodeLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		recs = append(recs, m)
	}
	return recs
}

func TestLoggerAddsTraceIDs(t *testing.T) {
	t.Parallel()
	ctx, sc := inSpan(t)
	var buf bytes.Buffer
	log := NewLogger(&buf, slog.LevelInfo, true).With(slog.String("host", "h1"))

	log.InfoContext(ctx, "handled", slog.String("subject", subject))
	log.Info("no context")
	log.InfoContext(context.Background(), "context without a span")
	log.WithGroup("event").With(slog.String("type", "host.down")).InfoContext(ctx, "grouped", slog.Int("n", 1))
	log.DebugContext(ctx, "below the level")

	recs := decodeLines(t, buf.String())
	if len(recs) != 4 {
		t.Fatalf("got %d records, want 4 (debug filtered out):\n%s", len(recs), buf.String())
	}
	for i, r := range recs {
		wantIDs := i == 0 || i == 3
		if got, want := r[TraceIDKey], sc.TraceID().String(); wantIDs && got != want {
			t.Errorf("record %q: trace_id = %v, want %s", r["msg"], got, want)
		}
		if got, want := r[SpanIDKey], sc.SpanID().String(); wantIDs && got != want {
			t.Errorf("record %q: span_id = %v, want %s", r["msg"], got, want)
		}
		if _, ok := r[TraceIDKey]; !wantIDs && ok {
			t.Errorf("record %q has a trace_id outside any span", r["msg"])
		}
		if r["host"] != "h1" {
			t.Errorf("record %q lost the logger's host attribute: %v", r["msg"], r)
		}
	}
	if g, _ := recs[3]["event"].(map[string]any); g["type"] != "host.down" || g["n"] != float64(1) {
		t.Errorf("grouped record %v: want event.type and event.n under the group", recs[3])
	}
}

func TestLoggerTextFormat(t *testing.T) {
	t.Parallel()
	ctx, sc := inSpan(t)
	var buf bytes.Buffer
	NewLogger(&buf, slog.LevelDebug, false).DebugContext(ctx, "handled")
	out := buf.String()
	for _, want := range []string{"msg=handled", "trace_id=" + sc.TraceID().String(), "span_id=" + sc.SpanID().String()} {
		if !strings.Contains(out, want) {
			t.Errorf("text log %q lacks %q", out, want)
		}
	}
}
