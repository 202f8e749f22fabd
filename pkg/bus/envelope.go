package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/telemetry"
)

// CloudEvents binary-mode headers for NATS (DESIGN §2), and lifeboat's own.
const (
	HeaderSpecVersion = "ce-specversion"
	HeaderID          = "ce-id"
	HeaderType        = "ce-type"
	HeaderSource      = "ce-source"
	HeaderTime        = "ce-time"
	HeaderContentType = "content-type"
	HeaderMsgID       = "Nats-Msg-Id"
	// HeaderDLQReason says why a message was dead-lettered.
	HeaderDLQReason = "Lifeboat-Dlq-Reason"
	// HeaderDLQSubject, HeaderDLQStreamSeq and HeaderDLQConsumer say where a
	// dead letter came from.
	HeaderDLQSubject   = "Lifeboat-Dlq-Subject"
	HeaderDLQStreamSeq = "Lifeboat-Dlq-Stream-Seq"
	HeaderDLQConsumer  = "Lifeboat-Dlq-Consumer"
	HeaderDLQDelivered = "Lifeboat-Dlq-Delivered"
)

// Envelope is one event or command ready to publish: its subject, its
// CloudEvents headers and its JSON body.
type Envelope struct {
	ID      string
	Subject string
	Header  map[string][]string
	Body    []byte
}

// NewEnvelope wraps ev (a struct from the events catalog) with a new id, the
// CloudEvents headers and the trace context of ctx. source names the sender,
// e.g. "lifeboat/host-1/backup-scheduler".
func NewEnvelope(ctx context.Context, source string, ev any) (Envelope, error) {
	t, ok := events.TypeOf(ev)
	if !ok {
		return Envelope{}, fmt.Errorf("bus: %T is not in the events catalog", ev)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return Envelope{}, fmt.Errorf("bus: encode %s: %w", t.Name, err)
	}
	if err := events.Validate(t, body); err != nil {
		return Envelope{}, fmt.Errorf("bus: refusing to send an invalid %s: %w", t.Name, err)
	}
	subject := t.Subject
	if t.Kind == events.Heartbeat {
		hb, _ := ev.(*events.HostHeartbeat)
		if hb == nil {
			if v, ok := ev.(events.HostHeartbeat); ok {
				hb = &v
			}
		}
		subject = events.HeartbeatSubject(hb.Host)
	}
	return NewRawEnvelope(ctx, source, t.CEType, subject, body), nil
}

// NewRawEnvelope is NewEnvelope for a body that is already JSON.
func NewRawEnvelope(ctx context.Context, source, ceType, subject string, body []byte) Envelope {
	id := newID()
	h := map[string][]string{
		HeaderSpecVersion: {"1.0"},
		HeaderID:          {id},
		HeaderType:        {ceType},
		HeaderSource:      {source},
		HeaderTime:        {time.Now().UTC().Format(time.RFC3339Nano)},
		HeaderContentType: {"application/json"},
		HeaderMsgID:       {id},
	}
	// A producer span marks the message's creation; the consumer's span
	// becomes its child, so an incident's events share one trace.
	ctx, span := telemetry.StartProducerSpan(ctx, subject, id)
	telemetry.InjectHeaders(ctx, h)
	span.End()
	return Envelope{ID: id, Subject: subject, Header: h, Body: body}
}

// DerivedID is an event id determined by parts (who emits, the message
// whose application emits it, its place among those): a name-based UUID
// (v5), so that every host emitting the same consequence of the same
// message gives it the same id.
func DerivedID(parts ...string) string {
	return uuid.NewSHA1(derivedNamespace, []byte(strings.Join(parts, "\x00"))).String()
}

// derivedNamespace is the UUID namespace of DerivedID.
var derivedNamespace = uuid.MustParse("6c1f0b8e-9a55-4d0e-8d0a-4c1b0a7e2f31")

// SetID gives the envelope another id (its CloudEvents id and its
// Nats-Msg-Id).
func (e *Envelope) SetID(id string) {
	e.ID = id
	e.Header[HeaderID] = []string{id}
	e.Header[HeaderMsgID] = []string{id}
}

// newID returns a time-ordered UUID (v7), so ids sort by creation.
func newID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}
