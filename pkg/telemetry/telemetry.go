// Package telemetry gives every lifeboat process its traces, logs, metrics and
// health endpoints: an OpenTelemetry tracer provider configured from the
// standard OTEL_* variables, producer and consumer spans for bus messages, a
// log/slog handler that stamps trace and span ids, a Prometheus registry with
// the bus metrics, and the /healthz, /readyz and /metrics handler.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Export protocols, as spelled in OTEL_EXPORTER_OTLP_PROTOCOL.
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
)

// Options name the process in its traces.
type Options struct {
	// ServiceName is the resource's service.name, e.g. "lifeboat".
	ServiceName string
	// ServiceVersion is the resource's service.version.
	ServiceVersion string
	// Host is the resource's host.name: the process's --host identity.
	Host string
	// SpanProcessors are added besides the OTLP exporter, and work even when
	// nothing is exported; tests pass
	// sdktrace.NewSimpleSpanProcessor(tracetest.NewInMemoryExporter()).
	SpanProcessors []sdktrace.SpanProcessor
}

// Telemetry is one process's tracer provider and metrics.
type Telemetry struct {
	tp       *sdktrace.TracerProvider // nil when OTEL_SDK_DISABLED=true
	protocol string                   // "" when nothing is exported
	registry *prometheus.Registry
	*Metrics
}

// Setup builds the tracer provider and metrics, and installs the provider and
// the W3C TraceContext and Baggage propagators as the process's globals.
//
// Spans are exported over OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; the protocol comes from
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL ("grpc" or
// "http/protobuf", the default), and the exporter reads headers, timeouts and
// TLS from the other OTEL_EXPORTER_OTLP_* variables itself. Without an
// endpoint nothing is exported and no connection is attempted, but spans still
// get real trace ids, so logs carry them and traceparent still propagates.
// OTEL_SDK_DISABLED=true installs a no-op provider: no spans are recorded, and
// an incoming traceparent is passed on unchanged.
func Setup(ctx context.Context, opts Options) (*Telemetry, error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	// Exporter failures happen in the background; say so in the process's log
	// rather than on a bare stderr.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		slog.Warn("opentelemetry: exporting traces failed; check OTEL_EXPORTER_OTLP_* settings", slog.String("error", err.Error()))
	}))

	t := &Telemetry{registry: prometheus.NewRegistry()}
	t.Metrics = newMetrics(t.registry)

	if strings.EqualFold(strings.TrimSpace(os.Getenv("OTEL_SDK_DISABLED")), "true") {
		otel.SetTracerProvider(noop.NewTracerProvider())
		return t, nil
	}

	var attrs []attribute.KeyValue
	for _, kv := range []attribute.KeyValue{
		semconv.ServiceName(opts.ServiceName),
		semconv.ServiceVersion(opts.ServiceVersion),
		semconv.HostName(opts.Host),
	} {
		if kv.Value.AsString() != "" {
			attrs = append(attrs, kv)
		}
	}
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attrs...),
		// OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME come last so an
		// operator can override what the code says.
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource (check OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}

	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if endpointSet() {
		protocol, err := exportProtocol()
		if err != nil {
			return nil, fmt.Errorf("telemetry: %w", err)
		}
		exp, err := newExporter(ctx, protocol)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP %s exporter: %w", protocol, err)
		}
		t.protocol = protocol
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
	}
	for _, sp := range opts.SpanProcessors {
		tpOpts = append(tpOpts, sdktrace.WithSpanProcessor(sp))
	}
	t.tp = sdktrace.NewTracerProvider(tpOpts...)
	otel.SetTracerProvider(t.tp)
	return t, nil
}

// Registry is the process's Prometheus registry, served on /metrics; it is
// not the global default registry.
func (t *Telemetry) Registry() *prometheus.Registry { return t.registry }

// TracerProvider is the provider Setup installed as the global one.
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if t.tp == nil {
		return noop.NewTracerProvider()
	}
	return t.tp
}

// ExportProtocol is the OTLP protocol spans are exported with ("grpc" or
// "http/protobuf"), or "" when nothing is exported.
func (t *Telemetry) ExportProtocol() string { return t.protocol }

// Shutdown flushes spans not yet exported and stops the exporter; ctx bounds
// how long it waits for the collector.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t.tp == nil {
		return nil
	}
	if err := t.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: flushing spans: %w", err)
	}
	return nil
}

// endpointSet reports whether an OTLP endpoint for traces is configured.
func endpointSet() bool {
	return strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) != "" ||
		strings.TrimSpace(os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")) != ""
}

// errProtocol is returned for an OTLP protocol this package cannot export with.
var errProtocol = errors.New("unsupported OTLP protocol")

// exportProtocol reads the OTLP protocol, the traces-specific variable first.
func exportProtocol() (string, error) {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		v := strings.ToLower(strings.TrimSpace(os.Getenv(name)))
		switch v {
		case "":
			continue
		case ProtocolGRPC, ProtocolHTTPProtobuf:
			return v, nil
		default:
			return "", fmt.Errorf("%s=%q: %w; set it to %q or %q", name, v, errProtocol, ProtocolGRPC, ProtocolHTTPProtobuf)
		}
	}
	return ProtocolHTTPProtobuf, nil
}

// newExporter builds the exporter for protocol. Neither constructor dials: a
// collector that is down costs failed exports later, not a failed start.
func newExporter(ctx context.Context, protocol string) (sdktrace.SpanExporter, error) {
	if protocol == ProtocolGRPC {
		return otlptracegrpc.New(ctx)
	}
	return otlptracehttp.New(ctx)
}
