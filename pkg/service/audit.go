package service

import (
	"context"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/micro"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/auth"
	"lifeboat.dev/pkg/store"
)

// classUnsigned is the dead-letter class of a command refused for its
// signature.
const classUnsigned = "unsigned"

// judge says who signed what a service received (a command, or a request
// to an Operator endpoint) and whether the service may act on it
// (auth.Judge), as the CommandAudited event that records it.
func (rt *Runtime) judge(subject, id string, get func(string) string, body []byte, received time.Time) events.CommandAudited {
	v := auth.Judge(rt.Deps.Auth, subject, id, get, body)
	return events.CommandAudited{Subject: subject, ID: id, Service: rt.Spec.Name, Host: rt.Deps.Host, ReceivedAt: received.UTC(),
		Key: v.Key, SignedAt: v.SignedAt, Operator: v.Operator, Accepted: v.Accepted, Reason: v.Reason}
}

// operatorOnly guards an Operator endpoint: a request the service may not
// act on (see judge) is answered 403, and every request, carried out or
// not, is recorded as a CommandAudited event. The record goes through the
// outbox, committed before the handler acts: it is durable on this host
// and published when JetStream can store it, so an operator's change is
// not refused for want of a quorum (it waits in the outbox, as the
// change's own events do) and never happens without its trail.
func (rt *Runtime) operatorOnly(h micro.HandlerFunc) micro.HandlerFunc {
	return func(req micro.Request) {
		hdr := req.Headers()
		a := rt.judge(req.Subject(), hdr.Get(auth.HeaderRequestID), hdr.Get, req.Data(), time.Now())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := rt.DB.Update(ctx, func(tx *store.Tx) error {
			_, err := tx.Emit(ctx, &a)
			return err
		})
		if err != nil {
			// No trail, no change: an operator retries.
			rt.Logger.Error("audit record not stored; request refused", slog.String("subject", req.Subject()), slog.String("error", err.Error()))
			_ = req.Error("503", "the audit record of this request could not be stored: "+err.Error(), nil)
			return
		}
		if !a.Accepted {
			rt.Logger.Warn("request refused", slog.String("subject", a.Subject), slog.String("reason", a.Reason))
			_ = req.Error("403", a.Reason, nil)
			return
		}
		h(req)
	}
}
