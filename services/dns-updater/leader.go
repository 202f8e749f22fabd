package dnsupdater

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/dns-updater/internal/db"
)

// The leader (service.Leader) makes every change: the change jobs every
// host queues are owned by it, so they run where it is; a new leader runs
// what is still queued at once (the runtime wakes the queue when it takes
// the lease). Reconciling, on taking the lease and every reconcileEvery,
// it makes sure that every pending change has a job on this host (a host
// whose state was rebuilt from a peer's snapshot has the peer's pending
// changes, but its own, empty, work queue), and, with the embedded
// provider, notes which hosts run dns-updater, for verification.
func (s *Service) reconcile(ctx context.Context, epoch uint64) error {
	if s.p == nil {
		return nil
	}
	var queued []string
	missing, err := db.New(s.db.R).PendingWithoutJob(ctx)
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	if len(missing) > 0 {
		err = s.db.Update(ctx, func(tx *store.Tx) error {
			missing, err := db.New(tx).PendingWithoutJob(ctx)
			if err != nil {
				return err
			}
			for _, p := range missing {
				c := changeJob{Kind: p.Kind, Instance: p.Instance, Name: p.Name, Type: p.Type, Value: p.Value, TTL: uint32(p.Ttl), Epoch: p.Epoch}
				if err := s.queueJob(ctx, tx, p.ID, time.UnixMilli(p.CreatedAt), c); err != nil {
					return err
				}
				queued = append(queued, p.ID)
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("reconcile: %w", err)
	}
	if len(queued) > 0 {
		s.log.InfoContext(ctx, "pending changes queued again on this host", slog.Uint64("epoch", epoch), slog.String("jobs", strings.Join(queued, " ")))
	}
	if s.emb != nil {
		if err := s.refreshHosts(ctx); err != nil {
			return fmt.Errorf("reconcile: hosts running %s: %w", Name, err)
		}
	}
	return nil
}

// run serves, once the state is in place (after a rebuild from a peer's
// snapshot, which replaces the zone's records under the server), what the
// database holds.
func (s *Service) run(ctx context.Context) error {
	if s.emb == nil {
		return nil
	}
	if err := s.emb.Reload(ctx); err != nil && ctx.Err() == nil {
		return fmt.Errorf("dns: %w", err)
	}
	return nil
}

// zoneQueued applies to the embedded zone, at start and before any event
// is consumed, the pending changes it does not hold: changes an older
// version queued (it applied them when their job ran), or that another
// provider was to make. Each is applied as its handler would have, dated
// when it was asked for, with the values before it that its job had read,
// if any.
func (s *Service) zoneQueued(ctx context.Context) error {
	rows, err := db.New(s.db.R).ListUnzoned(ctx)
	if err != nil {
		return fmt.Errorf("pending changes: %w", err)
	}
	for _, p := range rows {
		err := s.db.Update(ctx, func(tx *store.Tx) error {
			q := db.New(tx)
			c := changeJob{Kind: p.Kind, Instance: p.Instance, Name: p.Name, Type: p.Type, Value: p.Value, TTL: uint32(p.Ttl), Epoch: p.Epoch}
			ttl, err := ttlFor(ctx, q, s.cfg, &c)
			if err != nil {
				return err
			}
			c.TTL = ttl
			values, old, err := s.applyToZone(ctx, tx, p.ID, c, time.UnixMilli(p.CreatedAt))
			var invalid *invalidChange
			switch {
			case errors.As(err, &invalid):
				s.log.WarnContext(ctx, "a queued change is refused by the zone; its job reports it", slog.String("job", p.ID), slog.String("error", err.Error()))
				return nil
			case err != nil:
				return err
			case values == nil:
				return s.forget(ctx, tx, p.ID) // a TTL change of a name with no record: nothing to do
			}
			if p.Old.Valid {
				// What its job had read before the change, not what the
				// zone held at start (the change, maybe).
				if _, err := tx.ExecContext(ctx, `UPDATE dns_history SET old = ? WHERE job = ?`, p.Old.String, p.ID); err != nil {
					return err
				}
				old = p.Old.String
			}
			return q.MarkZoned(ctx, db.MarkZonedParams{Value: strings.Join(values, ","), Ttl: int64(ttl), Old: sql.NullString{String: old, Valid: true}, ID: p.ID})
		})
		if err != nil {
			return fmt.Errorf("apply queued change %s: %w", p.ID, err)
		}
	}
	return nil
}
