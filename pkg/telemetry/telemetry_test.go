package telemetry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// otelEnv lists the variables that change what Setup does.
var otelEnv = []string{
	"OTEL_SDK_DISABLED",
	"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
	"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
	"OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME",
	"OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG",
}

// clearOTelEnv unsets the OTEL variables for one test, whatever the machine
// running it has set; empty counts as unset for Setup and the exporters.
func clearOTelEnv(t testing.TB) {
	t.Helper()
	for _, name := range otelEnv {
		t.Setenv(name, "")
	}
}

// setup runs Setup with opts for one test and shuts it down after.
func setup(t *testing.T, opts Options) *Telemetry {
	t.Helper()
	if opts.ServiceName == "" {
		opts = Options{ServiceName: "lifeboat-test", ServiceVersion: "v0.0.0-test", Host: "test-host", SpanProcessors: opts.SpanProcessors}
	}
	tel, err := Setup(context.Background(), opts)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := tel.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return tel
}

func TestSetupWithoutEndpointExportsNothingButTraces(t *testing.T) {
	clearOTelEnv(t)
	tel := setup(t, Options{})
	if p := tel.ExportProtocol(); p != "" {
		t.Fatalf("ExportProtocol = %q with no endpoint set, want nothing exported", p)
	}
	ctx, span := StartProducerSpan(context.Background(), "lifeboat.event.host.down", "id-1")
	defer span.End()
	sc := span.SpanContext()
	if !sc.IsValid() || !sc.IsSampled() {
		t.Fatalf("span context %+v: want valid, sampled ids even with nothing exported", sc)
	}
	h := map[string][]string{}
	InjectHeaders(ctx, h)
	if got := HeaderCarrier(h).Get("traceparent"); !strings.Contains(got, sc.TraceID().String()) {
		t.Fatalf("traceparent %q does not carry trace id %s", got, sc.TraceID())
	}
}

func TestSetupResourceNamesTheProcess(t *testing.T) {
	clearOTelEnv(t)
	exp := tracetest.NewInMemoryExporter()
	tel := setup(t, Options{ServiceName: "lifeboat", ServiceVersion: "v1.2.3", Host: "hot-1", SpanProcessors: []sdktrace.SpanProcessor{sdktrace.NewSimpleSpanProcessor(exp)}})
	_, span := tel.TracerProvider().Tracer("test").Start(context.Background(), "x")
	span.End()
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("got %d spans, want 1", len(spans))
	}
	got := map[string]string{}
	for _, kv := range spans[0].Resource.Attributes() {
		got[string(kv.Key)] = kv.Value.String()
	}
	for k, want := range map[string]string{"service.name": "lifeboat", "service.version": "v1.2.3", "host.name": "hot-1"} {
		if got[k] != want {
			t.Errorf("resource %s = %q, want %q (all: %v)", k, got[k], want, got)
		}
	}
}

func TestSetupDisabledRecordsNothingButPropagates(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_SDK_DISABLED", "true")
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1") // ignored when disabled
	exp := tracetest.NewInMemoryExporter()
	tel := setup(t, Options{SpanProcessors: []sdktrace.SpanProcessor{sdktrace.NewSimpleSpanProcessor(exp)}})
	if p := tel.ExportProtocol(); p != "" {
		t.Fatalf("ExportProtocol = %q with OTEL_SDK_DISABLED=true", p)
	}
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx, span := StartConsumerSpan(context.Background(), map[string][]string{"traceparent": {parent}}, "lifeboat.event.host.down", "restore", "id-1")
	if span.IsRecording() {
		t.Error("span is recording with OTEL_SDK_DISABLED=true")
	}
	span.End()
	out := map[string][]string{}
	InjectHeaders(ctx, out)
	if got := HeaderCarrier(out).Get("traceparent"); got != parent {
		t.Errorf("traceparent passed on = %q, want the incoming %q", got, parent)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans recorded with OTEL_SDK_DISABLED=true", n)
	}
}

func TestSetupRejectsUnknownProtocol(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
	_, err := Setup(context.Background(), Options{ServiceName: "lifeboat"})
	if !errors.Is(err, errProtocol) || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_PROTOCOL") {
		t.Fatalf("Setup with http/json: %v, want an error naming the variable", err)
	}
}

func TestExportProtocol(t *testing.T) {
	for _, tc := range []struct {
		name          string
		traces, proto string
		want          string
		wantErr       bool
	}{
		{name: "default", want: ProtocolHTTPProtobuf},
		{name: "general grpc", proto: "grpc", want: ProtocolGRPC},
		{name: "traces wins", traces: "http/protobuf", proto: "grpc", want: ProtocolHTTPProtobuf},
		{name: "case and space", traces: " GRPC ", want: ProtocolGRPC},
		{name: "json unsupported", proto: "http/json", wantErr: true},
		{name: "nonsense", traces: "carrier-pigeon", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", tc.traces)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", tc.proto)
			got, err := exportProtocol()
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("exportProtocol() = %q, %v; want %q, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// exported waits for the first request a test collector received.
func exported(t *testing.T, got <-chan *collectortracepb.ExportTraceServiceRequest) *collectortracepb.ExportTraceServiceRequest {
	t.Helper()
	select {
	case req := <-got:
		return req
	case <-time.After(10 * time.Second):
		t.Fatal("the collector received no spans")
		return nil
	}
}

// spanNames lists the span names in an OTLP export request.
func spanNames(req *collectortracepb.ExportTraceServiceRequest) []string {
	var names []string
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				names = append(names, s.GetName())
			}
		}
	}
	return names
}

// exportOneSpan sets up with the current environment, ends one producer span
// and shuts down, which flushes it to the collector.
func exportOneSpan(t *testing.T, wantProtocol string) {
	t.Helper()
	tel, err := Setup(context.Background(), Options{ServiceName: "lifeboat", Host: "h1"})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if p := tel.ExportProtocol(); p != wantProtocol {
		t.Fatalf("ExportProtocol = %q, want %q", p, wantProtocol)
	}
	_, span := StartProducerSpan(context.Background(), "lifeboat.event.host.down", "id-1")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestSetupExportsOverHTTP(t *testing.T) {
	clearOTelEnv(t)
	got := make(chan *collectortracepb.ExportTraceServiceRequest, 8)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := &collectortracepb.ExportTraceServiceRequest{}
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, req) != nil {
			http.Error(w, "not an OTLP/HTTP protobuf trace export", http.StatusBadRequest)
			return
		}
		got <- req
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-test=yes")

	exportOneSpan(t, ProtocolHTTPProtobuf)
	if names := spanNames(exported(t, got)); len(names) != 1 || names[0] != "send lifeboat.event.host.down" {
		t.Fatalf("collector got spans %q, want the producer span", names)
	}
}

// grpcCollector is an OTLP/gRPC trace receiver.
type grpcCollector struct {
	collectortracepb.UnimplementedTraceServiceServer
	got chan *collectortracepb.ExportTraceServiceRequest
}

func (c *grpcCollector) Export(_ context.Context, req *collectortracepb.ExportTraceServiceRequest) (*collectortracepb.ExportTraceServiceResponse, error) {
	c.got <- req
	return &collectortracepb.ExportTraceServiceResponse{}, nil
}

func TestSetupExportsOverGRPC(t *testing.T) {
	clearOTelEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &grpcCollector{got: make(chan *collectortracepb.ExportTraceServiceRequest, 8)}
	srv := grpc.NewServer()
	collectortracepb.RegisterTraceServiceServer(srv, c)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://"+ln.Addr().String()) // http:// means no TLS
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")

	exportOneSpan(t, ProtocolGRPC)
	if names := spanNames(exported(t, c.got)); len(names) != 1 || names[0] != "send lifeboat.event.host.down" {
		t.Fatalf("collector got spans %q, want the producer span", names)
	}
}

func TestSetupInstallsGlobals(t *testing.T) {
	clearOTelEnv(t)
	tel := setup(t, Options{})
	if otel.GetTracerProvider() != tel.TracerProvider() {
		t.Error("the global tracer provider is not the one Setup built")
	}
	fields := otel.GetTextMapPropagator().Fields()
	for _, want := range []string{"traceparent", "tracestate", "baggage"} {
		found := false
		for _, f := range fields {
			found = found || f == want
		}
		if !found {
			t.Errorf("global propagator fields %v lack %q", fields, want)
		}
	}
}
