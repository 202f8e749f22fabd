package service_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/telemetry"
)

// TestTraceContextIsTheConsumerSpansParent: an event published with a trace
// context is handled in a consumer span that is the child of the producer's
// span, and the event the handler emits continues the same trace.
func TestTraceContextIsTheConsumerSpansParent(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{
		ServiceName: "lifeboat-test", Host: "test-host",
		SpanProcessors: []sdktrace.SpanProcessor{sdktrace.NewSimpleSpanProcessor(exp)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tel.Shutdown(context.Background()) })
	_, b := bustest.Embedded(t)
	ts := &testService{}
	runService(t, b, ts.spec(), t.TempDir())

	ctx, root := tel.TracerProvider().Tracer("test").Start(context.Background(), "incident")
	env, err := bus.NewEnvelope(ctx, "test", &events.HostDown{Host: "traced"})
	if err != nil {
		t.Fatal(err)
	}
	root.End()
	if _, err := b.JS.PublishMsg(ctx, &nats.Msg{Subject: env.Subject, Header: nats.Header(env.Header), Data: env.Body}); err != nil {
		t.Fatal(err)
	}
	traceID := root.SpanContext().TraceID()
	var producer, consumer, emitted sdktrace.ReadOnlySpan
	bustest.WaitFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		producer, consumer, emitted = nil, nil, nil
		for _, s := range exp.GetSpans().Snapshots() {
			switch {
			case s.Name() == "send lifeboat.event.host.down" && s.SpanKind() == trace.SpanKindProducer:
				producer = s
			case s.Name() == "process lifeboat.event.host.down" && s.SpanKind() == trace.SpanKindConsumer:
				consumer = s
			case s.Name() == "send lifeboat.event.host.up":
				emitted = s
			}
		}
		if producer == nil || consumer == nil || emitted == nil {
			return fmt.Errorf("spans so far: %d", len(exp.GetSpans()))
		}
		return nil
	})
	if consumer.Parent().SpanID() != producer.SpanContext().SpanID() {
		t.Errorf("consumer span's parent %s is not the producer span %s", consumer.Parent().SpanID(), producer.SpanContext().SpanID())
	}
	for _, s := range []sdktrace.ReadOnlySpan{producer, consumer, emitted} {
		if s.SpanContext().TraceID() != traceID {
			t.Errorf("span %q is in trace %s, want the incident's %s", s.Name(), s.SpanContext().TraceID(), traceID)
		}
	}
	if emitted.Parent().SpanID() != consumer.SpanContext().SpanID() {
		t.Errorf("the emitted HostUp's span is not a child of the consumer span")
	}
	attrs := map[string]string{}
	for _, kv := range consumer.Attributes() {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	if attrs["messaging.system"] != "nats" || attrs["messaging.destination.name"] != "lifeboat.event.host.down" || attrs["messaging.message.id"] != env.ID {
		t.Errorf("consumer span attributes %v lack the messaging conventions", attrs)
	}
}
