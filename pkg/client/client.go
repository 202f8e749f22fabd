// Package client is how the CLI and the tests talk to running services:
// Call asks an endpoint (request/reply, types in lifeboat.dev/events/api),
// Command sends a command on JetStream, and Listen waits for the event
// that answers it, the one whose request_id is the command's id.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/auth"
	"lifeboat.dev/pkg/bus"
)

// Source is the CloudEvents source (ce-source) of the commands and events
// this package sends.
const Source = "lifeboat/cli"

// Error is an error an endpoint answered with.
type Error struct {
	Service, Endpoint string
	// Code is the micro error code, one of api.Code* ("400", "404", ...).
	Code string
	// Message is the service's message: what was wrong and what to do.
	Message string
}

// Error returns the service's message as it is: it already names what was
// wrong.
func (e *Error) Error() string { return e.Message }

// Code returns the code of the endpoint error in err's chain ("404"), or
// "" when err is not an endpoint's answer.
func Code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// NoAnswerError is a call nobody answered: no service subscribes to the
// endpoint (Err is nats.ErrNoResponders) or none answered before the
// context ended (Err is its error, e.g. context.DeadlineExceeded). Host is
// set for a host-scoped call.
type NoAnswerError struct {
	Service, Host, Endpoint string
	Waited                  time.Duration
	Err                     error
}

func (e *NoAnswerError) Error() string {
	if e.Host != "" {
		subject := events.HostAPISubject(e.Service, e.Host, e.Endpoint)
		if errors.Is(e.Err, nats.ErrNoResponders) {
			return fmt.Sprintf("host %s does not answer %s: its lifeboat process is not running %s, or the host is down (`lifeboat status --hosts` shows the hosts that answer)",
				e.Host, subject, e.Service)
		}
		return fmt.Sprintf("host %s did not answer %s within %s: %v (is the host up? `lifeboat status --hosts` shows the hosts that answer)",
			e.Host, subject, e.Waited.Round(time.Millisecond), e.Err)
	}
	if errors.Is(e.Err, nats.ErrNoResponders) {
		return fmt.Sprintf("no %s is answering %s (is `lifeboat up` running with %s? `lifeboat status` shows the services that answer; point at another control plane with --nats)",
			e.Service, events.APISubject(e.Service, e.Endpoint), e.Service)
	}
	return fmt.Sprintf("%s did not answer %s within %s: %v (is `lifeboat up` running with %s? `lifeboat status` shows the services that answer; a slow answer needs a longer --timeout)",
		e.Service, events.APISubject(e.Service, e.Endpoint), e.Waited.Round(time.Millisecond), e.Err, e.Service)
}

func (e *NoAnswerError) Unwrap() error { return e.Err }

// Call asks service's endpoint with req (JSON; nil sends an empty body,
// the endpoint's zero request) and decodes the answer into reply (nil
// ignores it). ctx bounds the wait: give it a deadline. An error the
// endpoint answered with is an *Error carrying its code; an endpoint
// nobody answered is a *NoAnswerError.
func Call(ctx context.Context, nc *nats.Conn, service, endpoint string, req, reply any) error {
	return call(ctx, nc, service, "", endpoint, req, reply)
}

// CallHost asks host's process a host-scoped question, at
// lifeboat.api.<service>.<host>.<endpoint>, as Call does; a host that is
// down is a *NoAnswerError naming it.
func CallHost(ctx context.Context, nc *nats.Conn, service, host, endpoint string, req, reply any) error {
	return call(ctx, nc, service, host, endpoint, req, reply)
}

func call(ctx context.Context, nc *nats.Conn, service, host, endpoint string, req, reply any) error {
	what := service + " " + endpoint
	subject := events.APISubject(service, endpoint)
	if host != "" {
		what, subject = service+" "+endpoint+" on "+host, events.HostAPISubject(service, host, endpoint)
	}
	var body []byte
	if req != nil {
		var err error
		if body, err = json.Marshal(req); err != nil {
			return fmt.Errorf("%s: encode the request: %w", what, err)
		}
	}
	start := time.Now()
	rm := nats.NewMsg(subject)
	rm.Data = body
	if _, ok := ctx.Value(signerKey{}).(nkeys.KeyPair); ok {
		id := requestID()
		rm.Header.Set(auth.HeaderRequestID, id)
		if err := sign(ctx, subject, id, rm.Header, body); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	msg, err := nc.RequestMsgWithContext(ctx, rm)
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return &NoAnswerError{Service: service, Host: host, Endpoint: endpoint, Waited: time.Since(start), Err: err}
	case err != nil:
		return fmt.Errorf("%s: %w", what, err)
	}
	if e := msg.Header.Get(micro.ErrorHeader); e != "" {
		return &Error{Service: service, Endpoint: endpoint, Code: msg.Header.Get(micro.ErrorCodeHeader), Message: e}
	}
	if reply == nil {
		return nil
	}
	if err := json.Unmarshal(msg.Data, reply); err != nil {
		return fmt.Errorf("%s: unreadable answer (a lifeboat of another version?): %w", what, err)
	}
	return nil
}

// Publish sends env to JetStream with Nats-Msg-Id set to env.ID, so that
// JetStream drops a duplicate sent within its window, and returns the
// stream's acknowledgement.
func Publish(ctx context.Context, js jetstream.JetStream, env bus.Envelope) (*jetstream.PubAck, error) {
	msg := &nats.Msg{Subject: env.Subject, Header: nats.Header(maps.Clone(env.Header)), Data: env.Body}
	if msg.Header == nil {
		msg.Header = nats.Header{}
	}
	if err := sign(ctx, env.Subject, env.ID, msg.Header, env.Body); err != nil {
		return nil, fmt.Errorf("publish %s: %w", env.Subject, err)
	}
	ack, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(env.ID))
	if err != nil {
		if err = bus.ExplainUnavailable(ctx, js, env.Subject, err); errors.Is(err, bus.ErrNoQuorum) {
			return nil, fmt.Errorf("publish %s: %w", env.Subject, err)
		}
		return nil, fmt.Errorf("publish %s: %w (is `lifeboat up` running? its streams hold commands and events)", env.Subject, err)
	}
	return ack, nil
}

// Command sends cmd, a command of the events catalog (e.g.
// *events.BackupTake), and returns its id: the service's answering event
// carries it as request_id. Listen for the answer before sending, so that
// it cannot be missed.
func Command(ctx context.Context, js jetstream.JetStream, cmd any) (id string, err error) {
	return CommandTo(ctx, js, "", cmd)
}

// CommandTo sends cmd addressed to host's process, on
// lifeboat.cmd.<service>.<host>.<verb>, for host-bound work (a backup
// taken where the instance is active); an empty host sends it as Command
// does.
func CommandTo(ctx context.Context, js jetstream.JetStream, host string, cmd any) (id string, err error) {
	t, ok := events.TypeOf(cmd)
	if !ok || t.Kind != events.Command {
		return "", fmt.Errorf("client: %T is not a command of the events catalog", cmd)
	}
	env, err := bus.NewEnvelope(ctx, Source, cmd)
	if err != nil {
		return "", err
	}
	if host != "" {
		if env.Subject, err = events.HostCommandSubject(t, host); err != nil {
			return "", err
		}
	}
	if _, err := Publish(ctx, js, env); err != nil {
		return "", err
	}
	return env.ID, nil
}

// Answers receives the events that answer commands, from the moment
// Listen returns.
type Answers struct {
	ch   chan *nats.Msg
	subs []*nats.Subscription
}

// Listen subscribes to the events of the given types (values of catalog
// types, e.g. events.BackupTaken{}, events.BackupFailed{}), so that the
// answer of a command sent afterwards cannot be missed. Close it when
// done.
func Listen(nc *nats.Conn, answers ...any) (*Answers, error) {
	a := &Answers{ch: make(chan *nats.Msg, 256)}
	for _, v := range answers {
		t, ok := events.TypeOf(v)
		if !ok || t.Kind != events.Event {
			a.Close()
			return nil, fmt.Errorf("client: %T is not an event of the catalog", v)
		}
		sub, err := nc.ChanSubscribe(t.Subject, a.ch)
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("client: subscribe to %s: %w", t.Subject, err)
		}
		a.subs = append(a.subs, sub)
	}
	return a, nil
}

// Wait returns the first event whose request_id is id, decoded: a pointer
// to one of the types Listen was given (e.g. *events.BackupTaken). Events
// answering other commands are skipped. It returns ctx's error when ctx
// ends first.
func (a *Answers) Wait(ctx context.Context, id string) (any, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case m := <-a.ch:
			var probe struct {
				RequestID string `json:"request_id"`
			}
			if json.Unmarshal(m.Data, &probe) != nil || probe.RequestID != id {
				continue
			}
			t, ok := events.BySubject(m.Subject)
			if !ok {
				continue
			}
			ev, err := events.Decode(t, m.Data)
			if err != nil {
				return nil, fmt.Errorf("the answer to %s, a %s, does not decode: %w", id, t.Name, err)
			}
			return ev, nil
		}
	}
}

// Close stops listening.
func (a *Answers) Close() {
	for _, s := range a.subs {
		_ = s.Unsubscribe()
	}
}

// Hosts asks every process serving the micro service lifeboat-<service>
// to answer a ping and returns the hosts they name (the host in their
// metadata), in the order they answered. It returns once every host in
// expect has answered and no other answer came for quiet, once no answer
// came for quiet after the last, at once when nobody serves the service,
// and at the latest after most.
func Hosts(ctx context.Context, nc *nats.Conn, service string, expect map[string]bool, quiet, most time.Duration) ([]string, error) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest("$SRV.PING.lifeboat-"+service, inbox, nil); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(most)
	wait := most
	seen := map[string]bool{}
	var hosts []string
	for {
		wctx, cancel := context.WithTimeout(ctx, min(wait, time.Until(deadline)))
		m, err := sub.NextMsgWithContext(wctx)
		cancel()
		if err != nil {
			return hosts, ctx.Err() // quiet, or past most: nil
		}
		var p micro.Ping
		if json.Unmarshal(m.Data, &p) != nil {
			if len(m.Data) == 0 {
				return hosts, nil // no responders
			}
			continue
		}
		if h := p.Metadata["host"]; h != "" && !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
		wait = quiet
		all := len(expect) > 0
		for h := range expect {
			all = all && seen[h]
		}
		if all {
			wait = time.Millisecond // every host expected answered
		}
	}
}
