package telemetry

import (
	"context"
	"errors"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const subject = "lifeboat.event.host.down"

// recording sets up with an in-memory exporter that gets each span as it ends.
func recording(t *testing.T) *tracetest.InMemoryExporter {
	t.Helper()
	clearOTelEnv(t)
	exp := tracetest.NewInMemoryExporter()
	setup(t, Options{SpanProcessors: []sdktrace.SpanProcessor{sdktrace.NewSimpleSpanProcessor(exp)}})
	return exp
}

// attrs maps a span's attributes by key.
func attrs(s tracetest.SpanStub) map[attribute.Key]string {
	m := map[attribute.Key]string{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

// checkAttrs fails the test for each attribute of s that is not as wanted
// ("" wants it absent).
func checkAttrs(t *testing.T, s tracetest.SpanStub, want map[attribute.Key]string) {
	t.Helper()
	got := attrs(s)
	for k, v := range want {
		if g, ok := got[k]; g != v || (v == "" && ok) {
			t.Errorf("span %q: %s = %q, want %q", s.Name, k, g, v)
		}
	}
}

func TestConsumerSpanIsChildOfProducer(t *testing.T) {
	exp := recording(t)

	pctx, producer := StartProducerSpan(context.Background(), subject, "ev-1")
	h := map[string][]string{"Nats-Msg-Id": {"ev-1"}}
	InjectHeaders(pctx, h)
	producer.End()
	if _, ok := h["traceparent"]; !ok {
		t.Fatalf("headers %v lack a lower-case traceparent", h)
	}

	cctx, consumer := StartConsumerSpan(context.Background(), h, subject, "restore", "ev-1")
	if got := trace.SpanFromContext(cctx).SpanContext(); !got.Equal(consumer.SpanContext()) {
		t.Errorf("returned context holds span %v, want the consumer span", got)
	}
	consumer.End()

	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("got %d spans, want producer and consumer", len(spans))
	}
	p, c := spans[0], spans[1]
	if c.Parent.SpanID() != p.SpanContext.SpanID() || !c.Parent.IsRemote() {
		t.Errorf("consumer parent = %v, want the producer span %v, remote", c.Parent.SpanID(), p.SpanContext.SpanID())
	}
	if c.SpanContext.TraceID() != p.SpanContext.TraceID() {
		t.Errorf("consumer trace %v, producer trace %v: want one trace", c.SpanContext.TraceID(), p.SpanContext.TraceID())
	}
	if len(c.Links) != 0 {
		t.Errorf("consumer has links %v; the producer must be its parent, not a link", c.Links)
	}

	if p.Name != "send "+subject || p.SpanKind != trace.SpanKindProducer {
		t.Errorf("producer span %q kind %v, want %q kind producer", p.Name, p.SpanKind, "send "+subject)
	}
	checkAttrs(t, p, map[attribute.Key]string{
		"messaging.system":              "nats",
		"messaging.destination.name":    subject,
		"messaging.operation.type":      "send",
		"messaging.operation.name":      "send",
		"messaging.message.id":          "ev-1",
		"messaging.consumer.group.name": "",
	})
	if c.Name != "process "+subject || c.SpanKind != trace.SpanKindConsumer {
		t.Errorf("consumer span %q kind %v, want %q kind consumer", c.Name, c.SpanKind, "process "+subject)
	}
	checkAttrs(t, c, map[attribute.Key]string{
		"messaging.system":              "nats",
		"messaging.destination.name":    subject,
		"messaging.operation.type":      "process",
		"messaging.operation.name":      "process",
		"messaging.message.id":          "ev-1",
		"messaging.consumer.group.name": "restore",
	})
}

func TestConsumerSpanHeaderVariants(t *testing.T) {
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		spanID  = "00f067aa0ba902b7"
	)
	for _, tc := range []struct {
		name       string
		header     map[string][]string
		wantParent bool
	}{
		{name: "lower case", header: map[string][]string{"traceparent": {"00-" + traceID + "-" + spanID + "-01"}}, wantParent: true},
		{name: "canonical case", header: map[string][]string{"Traceparent": {"00-" + traceID + "-" + spanID + "-01"}}, wantParent: true},
		{name: "no headers (plain nats pub)", header: nil},
		{name: "malformed", header: map[string][]string{"traceparent": {"not-a-traceparent"}}},
		{name: "all-zero trace id", header: map[string][]string{"traceparent": {"00-00000000000000000000000000000000-" + spanID + "-01"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp := recording(t)
			_, span := StartConsumerSpan(context.Background(), tc.header, subject, "restore", "")
			span.End()
			s := exp.GetSpans()[0]
			if !s.SpanContext.IsValid() {
				t.Fatalf("consumer span context %v is not valid", s.SpanContext)
			}
			if tc.wantParent {
				if s.Parent.SpanID().String() != spanID || s.SpanContext.TraceID().String() != traceID {
					t.Errorf("parent %v trace %v, want parent %s in trace %s", s.Parent.SpanID(), s.SpanContext.TraceID(), spanID, traceID)
				}
			} else if s.Parent.IsValid() {
				t.Errorf("parent %v, want a new trace", s.Parent)
			}
			checkAttrs(t, s, map[attribute.Key]string{"messaging.message.id": ""})
		})
	}
}

func TestHeaderCarrierSetReplacesOtherCase(t *testing.T) {
	t.Parallel()
	c := HeaderCarrier{"Traceparent": {"old"}, "Nats-Msg-Id": {"x"}}
	c.Set("traceparent", "new")
	if _, ok := c["Traceparent"]; ok || c.Get("TRACEPARENT") != "new" || c.Get("Nats-Msg-Id") != "x" {
		t.Fatalf("after Set: %v", c)
	}
	if len(c.Keys()) != 2 {
		t.Fatalf("Keys() = %v, want 2 keys", c.Keys())
	}
	if c.Get("missing") != "" {
		t.Fatal("Get of a missing key is not empty")
	}
}

func TestRecordError(t *testing.T) {
	exp := recording(t)
	_, span := StartConsumerSpan(context.Background(), nil, subject, "restore", "ev-1")
	RecordError(span, nil)
	RecordError(span, errors.New("schema: host is required"))
	span.End()
	s := exp.GetSpans()[0]
	if s.Status.Code != codes.Error || s.Status.Description != "schema: host is required" {
		t.Errorf("status %+v, want error with the message", s.Status)
	}
	if len(s.Events) != 1 || s.Events[0].Name != "exception" {
		t.Errorf("events %v, want one exception", s.Events)
	}
	if attrs(s)["error.type"] == "" {
		t.Error("no error.type attribute")
	}
}

// FuzzStartConsumerSpan feeds arbitrary trace headers to the consumer side:
// whatever an outside publisher sends, the span is valid and, when a parent
// was accepted, in the parent's trace.
func FuzzStartConsumerSpan(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=x", "k=v")
	f.Add("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", "")
	f.Add("", "=,=,", "%zz;;=")
	f.Add("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", "a=b,c=d", "k=v;p")
	clearOTelEnv(f)
	tel, err := Setup(context.Background(), Options{ServiceName: "fuzz"})
	if err != nil {
		f.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	f.Fuzz(func(t *testing.T, traceparent, tracestate, baggage string) {
		h := map[string][]string{"traceparent": {traceparent}, "tracestate": {tracestate}, "baggage": {baggage}}
		ctx, span := StartConsumerSpan(context.Background(), h, subject, "g", "id")
		defer span.End()
		sc := span.SpanContext()
		if !sc.IsValid() {
			t.Fatalf("span context %v invalid for traceparent %q", sc, traceparent)
		}
		parent := trace.SpanContextFromContext(ExtractHeaders(context.Background(), h))
		if parent.IsValid() && parent.TraceID() != sc.TraceID() {
			t.Fatalf("accepted parent trace %v but span is in %v", parent.TraceID(), sc.TraceID())
		}
		out := map[string][]string{}
		InjectHeaders(ctx, out)
		if HeaderCarrier(out).Get("traceparent") == "" {
			t.Fatal("no traceparent to pass on")
		}
	})
}
