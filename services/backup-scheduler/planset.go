package backupscheduler

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/backup-scheduler/internal/db"
)

// The rules of a plan changed at run time (plan-set, plan-disable,
// plan-enable): validated as the config file is, a plan's origin kept,
// no two plans sharing a directory.

// planSet creates or changes a plan. The change is validated like the
// config file; a plan keeps its origin, so a config-declared plan changed
// here keeps the change until the file's declaration of it changes. A plan
// whose stored definition cannot be read is replaced by a request that
// gives the whole plan (schedule, directory and store), keeping its
// catalog.
//
// It does not wait for the plan's running job (withPlan): a backup can
// take hours, and the change is safe without: it commits in one
// transaction; a backup of the old directory still running checks, when
// its outcome commits, that the plan still has that directory before it
// catalogs the backup (record); the rebuild of a new directory is a job
// on the plan's key, so it runs after whatever job is running, and drops
// any row a rebuild of the old directory wrote meanwhile (it is not in the
// new directory).
func (s *Service) planSet(ctx context.Context, req api.PlanSetRequest) (any, error) {
	var rebuild bool
	var name string
	err := s.rt.DB.Update(ctx, func(tx *store.Tx) error {
		q := db.New(tx)
		r, err := q.PlanGet(ctx, req.Name)
		exists := err == nil
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		p := Plan{Name: req.Name}
		origin, hash := originAPI, ""
		unreadable := false
		if exists {
			if p, err = decodePlan(r); err != nil {
				if req.Schedule == nil || req.Directory == nil || req.Store == nil {
					return service.BadRequest(fmt.Errorf("%w; to replace it give the whole plan: its schedule, directory and store", err))
				}
				p, unreadable = Plan{Name: req.Name}, true
			}
			origin, hash = r.Origin, r.ConfigHash
		} else if req.Disabled != nil && req.Schedule == nil && req.Store == nil {
			return service.NotFound(fmt.Errorf("no plan named %q (lifeboat plan list shows the plans)", req.Name))
		}
		if p.Name == SelfPlan && req.Store != nil {
			return service.BadRequest(fmt.Errorf("plan %s: its store is lifeboat's own databases and cannot be changed", SelfPlan))
		}
		applyPatch(&p, req)
		n, err := p.Normalize()
		if err != nil {
			return service.BadRequest(fmt.Errorf("plan %s: %w", req.Name, err))
		}
		if n.Name != SelfPlan && n.Store.Kind == StoreSQLiteSet {
			return service.BadRequest(fmt.Errorf("plan %s: store.kind: %q is the built-in plan %s's kind; use sqlite, files or command", n.Name, n.Store.Kind, SelfPlan))
		}
		others, err := q.PlanList(ctx)
		if err != nil {
			return err
		}
		for _, o := range others {
			op, err := decodePlan(o)
			if err == nil && o.Name != n.Name && op.Directory == n.Directory {
				return service.BadRequest(fmt.Errorf("plan %s: directory: %s is the directory of plan %s; two plans cannot share a backup directory", n.Name, n.Directory, o.Name))
			}
		}
		name = n.Name
		if unreadable {
			// Whether the directory changed is unknown: the catalog is
			// kept, and rebuilt from the directory given.
			rebuild = true
			return s.storePlan(ctx, q, n, origin, hash, r.NextDueAt, s.now())
		}
		var prev *db.Plan
		if exists {
			prev = &r
		}
		rebuild, err = s.putPlan(ctx, q, n, origin, hash, prev, s.now())
		return err
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if rebuild {
		s.rebuild[name] = true
	}
	// A changed schedule takes effect at once: prune by it now.
	delete(s.pruned, name)
	s.mu.Unlock()
	s.poke()
	q := db.New(s.rt.DB.R)
	r, err := q.PlanGet(ctx, name)
	if err != nil {
		return nil, err
	}
	backups, err := q.BackupsOfPlan(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.view(r, backups)
}

func applyPatch(p *Plan, req api.PlanSetRequest) {
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&p.Instance, req.Instance)
	set(&p.Description, req.Description)
	set(&p.Schedule, req.Schedule)
	set(&p.Directory, req.Directory)
	if req.Store != nil {
		p.Store = storeOf(*req.Store)
	}
	if req.Hooks != nil {
		p.Hooks = hooksOf(*req.Hooks)
	}
	if req.Targets != nil {
		p.Targets = *req.Targets
	}
	if req.MinKeep != nil {
		p.MinKeep = req.MinKeep
	}
	if req.Disabled != nil {
		p.Disabled = *req.Disabled
	}
}
