package telemetry

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// scope names the tracer of the spans this package starts.
const scope = "lifeboat.dev/pkg/telemetry"

// messagingSystem is messaging.system for NATS; semconv has no constant for it.
var messagingSystem = semconv.MessagingSystemKey.String("nats")

// HeaderCarrier lets the global propagator read and write NATS message headers
// (nats.Header is a map[string][]string). Keys are written as the propagator
// gives them ("traceparent", lower case, as other NATS clients expect) and
// read without regard to case, since some clients canonicalise them.
type HeaderCarrier map[string][]string

var _ propagation.TextMapCarrier = HeaderCarrier(nil)

// Get returns the first value of key.
func (c HeaderCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

// Set replaces the values of key, and of any spelling of it in another case.
func (c HeaderCarrier) Set(key, value string) {
	for k := range c {
		if k != key && strings.EqualFold(k, key) {
			delete(c, k)
		}
	}
	c[key] = []string{value}
}

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// InjectHeaders writes ctx's trace context (traceparent, tracestate) and
// baggage into h, a NATS header.
func InjectHeaders(ctx context.Context, h map[string][]string) {
	otel.GetTextMapPropagator().Inject(ctx, HeaderCarrier(h))
}

// ExtractHeaders returns ctx carrying the remote trace context and baggage
// found in h; ctx is returned unchanged when h carries none or a malformed one.
func ExtractHeaders(ctx context.Context, h map[string][]string) context.Context {
	return otel.GetTextMapPropagator().Extract(ctx, HeaderCarrier(h))
}

// StartProducerSpan starts the span of publishing one message to subject,
// named "send <subject>", kind Producer. Inject the returned context into the
// message's headers, and End the span once the publish is acknowledged.
func StartProducerSpan(ctx context.Context, subject, msgID string) (context.Context, trace.Span) {
	return otel.Tracer(scope).Start(ctx, "send "+subject,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(messagingAttrs(subject, msgID, "send", semconv.MessagingOperationTypeSend)...))
}

// StartConsumerSpan starts the span of handling one message, named
// "process <subject>", kind Consumer. It is a child of the producer's context
// carried in header, so a trace follows an incident across services; without
// one it is a child of ctx's span, or a new trace. consumerGroup is the
// durable consumer's name.
func StartConsumerSpan(ctx context.Context, header map[string][]string, subject, consumerGroup, msgID string) (context.Context, trace.Span) {
	attrs := messagingAttrs(subject, msgID, "process", semconv.MessagingOperationTypeProcess)
	if consumerGroup != "" {
		attrs = append(attrs, semconv.MessagingConsumerGroupName(consumerGroup))
	}
	return otel.Tracer(scope).Start(ExtractHeaders(ctx, header), "process "+subject,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attrs...))
}

// RecordError marks span as failed with err; a nil err does nothing.
func RecordError(span trace.Span, err error) {
	if err == nil {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	span.SetAttributes(semconv.ErrorType(err))
}

// messagingAttrs are the attributes shared by producer and consumer spans.
func messagingAttrs(subject, msgID, operation string, opType attribute.KeyValue) []attribute.KeyValue {
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs,
		messagingSystem,
		semconv.MessagingDestinationName(subject),
		semconv.MessagingOperationName(operation),
		opType,
	)
	if msgID != "" {
		attrs = append(attrs, semconv.MessagingMessageID(msgID))
	}
	return attrs
}
