package service

import (
	"context"
	"errors"
	"fmt"
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
// to an Operator endpoint) and whether the service may act on it: with
// Deps.Auth, only when an operator key of cluster.json signed it; without
// (a cluster on loopback), always, the signature recorded when there is
// one. get looks a header up.
func (rt *Runtime) judge(subject, id string, get func(string) string, body []byte, received time.Time) events.CommandAudited {
	a := events.CommandAudited{Subject: subject, ID: id, Service: rt.Spec.Name, Host: rt.Deps.Host, ReceivedAt: received.UTC(), Accepted: true}
	sig, err := auth.Verify(subject, id, get, body)
	if err == nil {
		a.Key, a.SignedAt = sig.Key, sig.At.UTC()
		if rt.Deps.Auth != nil {
			a.Operator, _ = rt.Deps.Auth.Operator(sig.Key)
		}
	}
	switch {
	case rt.Deps.Auth == nil:
	case errors.Is(err, auth.ErrUnsigned):
		a.Accepted, a.Reason = false, "not signed: this cluster requires operator commands signed with an operator key (lifeboat ... --nats-nkey operator.nk)"
	case err != nil:
		a.Accepted, a.Reason = false, "bad signature: "+err.Error()
	case a.Operator == "":
		a.Accepted, a.Reason = false, fmt.Sprintf("signed by %s, which is no operator key of this cluster's cluster.json", sig.Key)
	}
	return a
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
