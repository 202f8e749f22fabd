package backupscheduler

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"lifeboat.dev/events/api"
	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/backup-scheduler/internal/db"
)

// The catalog's endpoints that read the plans' directories (catalog-rebuild,
// backup-verify). Each holds its plan while it works (withPlan): a job on
// the plan's key, so it never overlaps the plan's backup, pruning pass or
// rebuild.

// plansFor returns the named plan, or every plan when name is empty.
func (s *Service) plansFor(ctx context.Context, name string) ([]Plan, error) {
	q := db.New(s.rt.DB.R)
	var rows []db.Plan
	if name != "" {
		r, err := q.PlanGet(ctx, name)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, service.NotFound(fmt.Errorf("no plan named %q (lifeboat plan list shows the plans)", name))
		}
		if err != nil {
			return nil, err
		}
		rows = []db.Plan{r}
	} else {
		var err error
		if rows, err = q.PlanList(ctx); err != nil {
			return nil, err
		}
	}
	var out []Plan
	for _, r := range rows {
		p, err := decodePlan(r)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func (s *Service) rebuildAll(ctx context.Context, req api.RebuildRequest) (any, error) {
	plans, err := s.plansFor(ctx, req.Plan)
	if err != nil {
		return nil, err
	}
	out := []api.RebuildResult{}
	for _, p := range plans {
		var res RebuildResult
		err := s.withPlan(ctx, p.Name, "rebuilding the catalog", func() error {
			var err error
			res, err = s.rebuildCatalog(ctx, p, req.Full)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("plan %s: %w", p.Name, err)
		}
		out = append(out, api.RebuildResult(res))
	}
	return out, nil
}

// verify re-reads backups in full and records the outcome in the catalog.
func (s *Service) verify(ctx context.Context, req api.VerifyRequest) (any, error) {
	plans, err := s.plansFor(ctx, req.Plan)
	if err != nil {
		return nil, err
	}
	if req.Name != "" && !backup.IsName(req.Name) {
		return nil, service.BadRequest(fmt.Errorf("%q is not a backup name (want backup-YYYY-MM-DD_HH-MM-SS-ZZZZ; lifeboat backup list shows them)", req.Name))
	}
	out := []api.VerifyResult{}
	for _, p := range plans {
		if req.Name != "" {
			if _, err := os.Stat(filepath.Join(p.Directory, req.Name)); err != nil {
				continue
			}
		}
		err := s.withPlan(ctx, p.Name, "verifying backups", func() error {
			if req.Name == "" {
				if _, err := s.rebuildCatalog(ctx, p, true); err != nil {
					return err
				}
			} else {
				t, _ := backup.ParseName(req.Name)
				put, _ := check(ctx, p, backup.Entry{Name: req.Name, Time: t}, s.now())
				if err := s.rt.DB.Update(ctx, func(tx *store.Tx) error { return db.New(tx).BackupPut(ctx, put) }); err != nil {
					return err
				}
			}
			rows, err := db.New(s.rt.DB.R).BackupsOfPlan(ctx, p.Name)
			if err != nil {
				return err
			}
			for _, r := range rows {
				if req.Name == "" || r.Name == req.Name {
					out = append(out, api.VerifyResult{Plan: p.Name, Name: r.Name, State: r.State, Problem: r.Problem, Bytes: r.Bytes})
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("plan %s: %w", p.Name, err)
		}
	}
	if req.Name != "" && len(out) == 0 {
		return nil, service.NotFound(fmt.Errorf("no plan's directory holds %s (lifeboat backup list shows the backups)", req.Name))
	}
	return out, nil
}
