package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"lifeboat.dev/events"
	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/bus"
	"lifeboat.dev/pkg/bustest"
	"lifeboat.dev/pkg/client"
	"lifeboat.dev/pkg/service"
)

const svc = "test-svc"

type echoRequest struct {
	Name string `json:"name"`
}

type echoReply struct {
	Hello string `json:"hello"`
}

// serve registers endpoints under lifeboat.api.test-svc the way services
// do (micro, answered with service.RespondJSON).
func serve(t *testing.T, nc *nats.Conn, endpoints map[string]micro.HandlerFunc) {
	t.Helper()
	m, err := micro.AddService(nc, micro.Config{Name: "lifeboat-" + svc, Version: "0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop() })
	g := m.AddGroup(events.APISubject(svc, ""))
	for name, h := range endpoints {
		if err := g.AddEndpoint(name, h); err != nil {
			t.Fatal(err)
		}
	}
}

func callCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestCallDecodesTheAnswerAndTypesTheServicesErrors(t *testing.T) {
	_, b := bustest.Embedded(t)
	serve(t, b.NC, map[string]micro.HandlerFunc{
		"echo": func(r micro.Request) {
			var req echoRequest
			if len(r.Data()) > 0 {
				if err := json.Unmarshal(r.Data(), &req); err != nil {
					service.RespondJSON(r, nil, service.BadRequest(err))
					return
				}
			}
			if req.Name == "nobody" {
				service.RespondJSON(r, nil, service.NotFound(errors.New(`no one named "nobody" (lifeboat who list shows them)`)))
				return
			}
			service.RespondJSON(r, echoReply{Hello: req.Name}, nil)
		},
	})

	var reply echoReply
	if err := client.Call(callCtx(t, 5*time.Second), b.NC, svc, "echo", echoRequest{Name: "ann"}, &reply); err != nil || reply.Hello != "ann" {
		t.Fatalf("Call = %+v, %v", reply, err)
	}
	// No request: an empty body, the endpoint's zero request.
	reply = echoReply{Hello: "stale"}
	if err := client.Call(callCtx(t, 5*time.Second), b.NC, svc, "echo", nil, &reply); err != nil || reply.Hello != "" {
		t.Fatalf("Call without a request = %+v, %v", reply, err)
	}
	// No reply wanted.
	if err := client.Call(callCtx(t, 5*time.Second), b.NC, svc, "echo", echoRequest{Name: "ann"}, nil); err != nil {
		t.Fatal(err)
	}

	err := client.Call(callCtx(t, 5*time.Second), b.NC, svc, "echo", echoRequest{Name: "nobody"}, &reply)
	var ae *client.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeNotFound || ae.Service != svc || ae.Endpoint != "echo" {
		t.Fatalf("Call of a missing name: %#v", err)
	}
	if client.Code(err) != api.CodeNotFound || client.Code(fmt.Errorf("wrapped: %w", err)) != api.CodeNotFound || client.Code(errors.New("other")) != "" {
		t.Errorf("Code does not find the code of %v", err)
	}
	// The message is the service's, as it wrote it.
	if err.Error() != `no one named "nobody" (lifeboat who list shows them)` {
		t.Errorf("error %q", err)
	}

	// An answer that does not fit the reply says so.
	var wrong []string
	if err := client.Call(callCtx(t, 5*time.Second), b.NC, svc, "echo", echoRequest{Name: "ann"}, &wrong); err == nil || !strings.Contains(err.Error(), "unreadable answer") || client.Code(err) != "" {
		t.Errorf("Call into the wrong type: %v", err)
	}
}

func TestCallNobodyAnsweringSaysWhoAndWhatToDo(t *testing.T) {
	_, b := bustest.Embedded(t)
	// No service at all: NATS says so at once.
	start := time.Now()
	err := client.Call(callCtx(t, 10*time.Second), b.NC, svc, "echo", nil, nil)
	var ne *client.NoAnswerError
	if !errors.As(err, &ne) || !errors.Is(err, nats.ErrNoResponders) || time.Since(start) > 5*time.Second {
		t.Fatalf("Call with no service: %#v after %s", err, time.Since(start))
	}
	for _, want := range []string{"no test-svc is answering lifeboat.api.test-svc.echo", "lifeboat up", "lifeboat status"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}

	// A service that takes the request and never answers.
	sub, err := b.NC.Subscribe(events.APISubject(svc, "slow"), func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := b.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	err = client.Call(callCtx(t, 200*time.Millisecond), b.NC, svc, "slow", nil, nil)
	if !errors.As(err, &ne) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call of a silent endpoint: %#v", err)
	}
	for _, want := range []string{"test-svc did not answer lifeboat.api.test-svc.slow within", "--timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
}

func TestCommandIsPublishedOnceWithItsIDAndItsAnswerFound(t *testing.T) {
	_, b := bustest.Embedded(t)
	ctx := callCtx(t, 20*time.Second)
	answers, err := client.Listen(b.NC, events.BackupTaken{}, events.BackupFailed{})
	if err != nil {
		t.Fatal(err)
	}
	defer answers.Close()

	id, err := client.Command(ctx, b.JS, &events.BackupTake{Plan: "wr", Kind: events.BackupManual})
	if err != nil || id == "" {
		t.Fatalf("Command = %q, %v", id, err)
	}
	// On the commands stream once, with the id as ce-id and Nats-Msg-Id.
	stream, err := b.JS.Stream(ctx, events.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, events.SubjectOf[events.BackupTake]())
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(bus.HeaderID) != id || m.Header.Get(bus.HeaderMsgID) != id || m.Header.Get(bus.HeaderSource) != client.Source {
		t.Errorf("command headers %v, want id %s", m.Header, id)
	}
	// Sent again with the same id (a retry), JetStream drops it.
	env := bus.Envelope{ID: id, Subject: m.Subject, Header: m.Header, Body: m.Data}
	ack, err := client.Publish(ctx, b.JS, env)
	if err != nil || !ack.Duplicate {
		t.Errorf("republished command: %+v, %v; want a duplicate", ack, err)
	}

	// The answers of other commands are skipped; the one carrying the id
	// is returned decoded.
	now := time.Now().UTC()
	for _, ev := range []any{
		&events.BackupFailed{Plan: "wr", Error: "someone else's", RequestID: "other"},
		&events.BackupTaken{Plan: "wr", Instance: "wr", Backup: "backup-2025-06-01_12-00-00-0000", Kind: events.BackupScheduled, Dir: "/b",
			Store: "sqlite", SHA256: strings.Repeat("a", 64), TakenAt: now, ConsistentAt: now},
		&events.BackupTaken{Plan: "wr", Instance: "wr", Backup: "backup-2025-06-01_12-00-01-0000", Kind: events.BackupManual, Dir: "/b",
			Store: "sqlite", SHA256: strings.Repeat("b", 64), TakenAt: now, ConsistentAt: now, RequestID: id},
	} {
		env, err := bus.NewEnvelope(ctx, "test", ev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Publish(ctx, b.JS, env); err != nil {
			t.Fatal(err)
		}
	}
	got, err := answers.Wait(ctx, id)
	taken, ok := got.(*events.BackupTaken)
	if err != nil || !ok || taken.Backup != "backup-2025-06-01_12-00-01-0000" || taken.RequestID != id {
		t.Fatalf("Wait = %#v, %v", got, err)
	}

	// No answer: the context's error.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := answers.Wait(short, "never-sent"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with no answer = %v", err)
	}
}

func TestCommandAndListenRefuseWhatIsNotOne(t *testing.T) {
	_, b := bustest.Embedded(t)
	if _, err := client.Command(context.Background(), b.JS, &events.HostDown{Host: "h1"}); err == nil || !strings.Contains(err.Error(), "not a command") {
		t.Errorf("Command of an event: %v", err)
	}
	if _, err := client.Command(context.Background(), b.JS, &events.BackupTake{}); err == nil || !strings.Contains(err.Error(), "invalid") {
		t.Errorf("Command of an invalid command: %v", err)
	}
	if _, err := client.Listen(b.NC, events.BackupTake{}); err == nil || !strings.Contains(err.Error(), "not an event") {
		t.Errorf("Listen to a command: %v", err)
	}
	// Nothing reached the commands stream.
	s, err := b.JS.Stream(context.Background(), events.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(context.Background()); err != nil || info.State.Msgs != 0 {
		t.Errorf("commands stream: %+v, %v", info, err)
	}
}
