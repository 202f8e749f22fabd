package backupscheduler

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/store"
	"lifeboat.dev/services/backup-scheduler/internal/db"
)

// The run-time changes of the plans are replicated state apart from the
// plans themselves (DESIGN §1 "Replicas must not diverge"):
//
//   - plan_changes (Spec.Replicated) is what the PlanChanged events said,
//     per plan: each field a change gave, its latest value and the rev of
//     the change that gave it, the last change's changed_at and id. The
//     handler writes it from the event and the row alone, so every host
//     holds the same rows (the digest endpoint hashes them; a host that
//     rebuilds copies them from a peer).
//   - plans is this host's own: the effective plan it runs — the config
//     file's declaration (with this host's paths: {host} directories,
//     lifeboat-self's store) or, for a plan created at run time, nothing,
//     with the changes taken on top — and the scheduler's state of it.
//   - plan_changes_taken, also this host's own, says up to which rev of a
//     plan's changes its plans row has taken them. Taking a plan's changes
//     (takeChanges) applies the fields changed after that rev to its plan,
//     checked as a change is checked, and moves the rev on whether they
//     held here or not. The config file's declaration, when it wins
//     (applyConfig: the plan is new in the file or its declaration
//     changed), overrides the changes before it: the rev moves on without
//     them.
//
// Applying a PlanChanged is therefore: record it in plan_changes, then take
// the plan's changes — which are this event's fields alone, unless a
// rebuild from a peer replaced plan_changes since this host last took them:
// then the fields the missed changes gave are taken too. A plan whose
// changes are behind after a rebuild (nothing may change it before it
// runs) takes them at the next start (init) or the scheduler's next pass
// (tick), whichever comes first.

// changedField is one field of a plan_changes row: its latest value, as a
// plan's JSON holds it, and the rev of the change that gave it.
type changedField struct {
	Rev   int64           `json:"rev"`
	Value json.RawMessage `json:"value"`
}

// planFieldKeys are the fields of a plan a change can give, by their JSON
// keys (events.PlanFields uses the same).
var planFieldKeys = []string{"instance", "description", "schedule", "directory", "store", "hooks", "targets", "min_keep", "disabled"}

// planField points at p's field key, nil for a key that is not one.
func planField(p *Plan, key string) any {
	switch key {
	case "instance":
		return &p.Instance
	case "description":
		return &p.Description
	case "schedule":
		return &p.Schedule
	case "directory":
		return &p.Directory
	case "store":
		return &p.Store
	case "hooks":
		return &p.Hooks
	case "targets":
		return &p.Targets
	case "min_keep":
		return &p.MinKeep
	case "disabled":
		return &p.Disabled
	}
	return nil
}

// changeValues are the fields ev gives, each as the plan's JSON holds it:
// the fields a set gives; disabled for a disable or an enable.
func changeValues(ev *events.PlanChanged) (map[string]json.RawMessage, error) {
	var p Plan
	var keys []string
	switch ev.Action {
	case events.PlanActionDisable, events.PlanActionEnable:
		p.Disabled = ev.Action == events.PlanActionDisable
		keys = []string{"disabled"}
	case events.PlanActionSet:
		f := ev.Set
		if f == nil {
			break
		}
		applyFields(&p, f)
		given := map[string]bool{"instance": f.Instance != nil, "description": f.Description != nil, "schedule": f.Schedule != nil,
			"directory": f.Directory != nil, "store": f.Store != nil, "hooks": f.Hooks != nil, "targets": f.Targets != nil,
			"min_keep": f.MinKeep != nil, "disabled": f.Disabled != nil}
		for _, k := range planFieldKeys {
			if given[k] {
				keys = append(keys, k)
			}
		}
	}
	vals := map[string]json.RawMessage{}
	for _, k := range keys {
		b, err := json.Marshal(planField(&p, k))
		if err != nil {
			return nil, fmt.Errorf("plan %s: %s: %w", ev.Plan, k, err)
		}
		vals[k] = b
	}
	return vals, nil
}

// applyValues sets the fields vals gives, each replacing the plan's field
// whole (a store, the hooks), as applyFields does.
func applyValues(p *Plan, vals map[string]json.RawMessage) error {
	for k, raw := range vals {
		var fresh Plan
		v := planField(&fresh, k)
		if v == nil {
			return fmt.Errorf("plan %s: a change gives %q, which is not a field of a plan", p.Name, k)
		}
		if err := json.Unmarshal(raw, v); err != nil {
			return fmt.Errorf("plan %s: a change's %s: %w", p.Name, k, err)
		}
		reflect.ValueOf(planField(p, k)).Elem().Set(reflect.ValueOf(v).Elem())
	}
	return nil
}

// changedFields decodes a plan_changes row's fields.
func changedFields(c db.PlanChange) (map[string]changedField, error) {
	fields := map[string]changedField{}
	if err := json.Unmarshal([]byte(c.Fields), &fields); err != nil {
		return nil, fmt.Errorf("plan %s: its recorded changes are unreadable: %w", c.Plan, err)
	}
	return fields, nil
}

// recordPlanChange writes ev, the PlanChanged id, into the plan's
// plan_changes row: its fields at the next rev, its changed_at and id. It
// reads nothing but the event and the row, so every host writes the same.
func recordPlanChange(ctx context.Context, tx *store.Tx, ev *events.PlanChanged, id string) error {
	q := db.New(tx)
	vals, err := changeValues(ev)
	if err != nil {
		return err
	}
	fields := map[string]changedField{}
	var rev int64
	switch c, err := q.PlanChangeGet(ctx, ev.Plan); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return fmt.Errorf("plan changes: %w", err)
	default:
		if fields, err = changedFields(c); err != nil {
			return err
		}
		rev = c.Rev
	}
	rev++
	for k, v := range vals {
		fields[k] = changedField{Rev: rev, Value: v}
	}
	b, err := json.Marshal(fields)
	if err != nil {
		return fmt.Errorf("plan %s: %w", ev.Plan, err)
	}
	if err := q.PlanChangePut(ctx, db.PlanChangePutParams{
		Plan: ev.Plan, Fields: string(b), Rev: rev, ChangedAt: ev.ChangedAt.UnixMilli(), ChangeID: id,
	}); err != nil {
		return fmt.Errorf("plan changes: %w", err)
	}
	return nil
}

// takenRev is the rev of name's changes this host has taken, 0 for none.
func takenRev(ctx context.Context, q *db.Queries, name string) (int64, error) {
	rev, err := q.PlanChangesTaken(ctx, name)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("plan changes taken: %w", err)
	}
	return rev, nil
}

// takeChanges brings this host's plan name up to its plan_changes row: the
// fields changed after the rev this host took last are applied to its plan
// (to a new one when it has none), which is checked and stored as a change
// is (at the last change's changed_at, never the clock), and the rev moves
// on. A change that does not hold here (the plan is unknown or unreadable
// here, the plan it makes is invalid, another plan has the directory) is
// returned as refused and left out; the rev moves on all the same. set says
// whether the changes include a set (else, for a plan this host does not
// have, they can only be a disable or an enable of a plan unknown here).
func (s *Service) takeChanges(ctx context.Context, tx *store.Tx, name string, set bool) (refused, err error) {
	q := db.New(tx)
	c, err := q.PlanChangeGet(ctx, name)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("plan changes: %w", err)
	}
	from, err := takenRev(ctx, q, name)
	if err != nil || from >= c.Rev {
		return nil, err
	}
	fields, err := changedFields(c)
	if err != nil {
		return nil, err
	}
	vals := map[string]json.RawMessage{}
	for k, f := range fields {
		if f.Rev > from {
			vals[k] = f.Value
		}
	}
	if err := q.PlanChangesTakenPut(ctx, db.PlanChangesTakenPutParams{Plan: name, Rev: c.Rev}); err != nil {
		return nil, fmt.Errorf("plan changes taken: %w", err)
	}
	row, exists, err := getPlan(ctx, q, name)
	if err != nil {
		return nil, err
	}
	p, unreadable, err := mergePlan(name, vals, set, row, exists)
	if err != nil {
		return err, nil
	}
	n, err := checkApplied(p)
	if err != nil {
		return service.BadRequest(fmt.Errorf("plan %s: %w", name, err)), nil
	}
	others, err := q.PlanList(ctx)
	if err != nil {
		return nil, fmt.Errorf("plans: %w", err)
	}
	if err := conflicts(n, others); err != nil {
		return err, nil
	}
	origin, hash := originAPI, ""
	if exists {
		origin, hash = row.Origin, row.ConfigHash
	}
	at := time.UnixMilli(c.ChangedAt)
	rebuild := true
	if unreadable {
		// Whether the directory changed is unknown: the catalog is kept,
		// and rebuilt from the directory given.
		err = s.storePlan(ctx, tx, n, origin, hash, row.NextDueAt, at)
	} else {
		var prev *db.Plan
		if exists {
			prev = &row
		}
		rebuild, err = s.putPlan(ctx, tx, n, origin, hash, prev, at)
	}
	if err != nil {
		return nil, err
	}
	tx.AfterCommit(func() {
		s.mu.Lock()
		if rebuild {
			s.rebuild[n.Name] = true
		}
		// A changed schedule takes effect at once: prune by it now.
		delete(s.pruned, n.Name)
		s.mu.Unlock()
		s.poke()
	})
	return nil, nil
}

// takeChangesBehind takes the changes of every plan whose changes this
// host has not all taken (a rebuild from a peer replaced plan_changes),
// in the order of their names.
func (s *Service) takeChangesBehind(ctx context.Context, tx *store.Tx) error {
	names, err := db.New(tx).PlanChangesBehind(ctx)
	if err != nil {
		return fmt.Errorf("plan changes: %w", err)
	}
	for _, name := range names {
		refused, err := s.takeChanges(ctx, tx, name, true)
		if err != nil {
			return err
		}
		if refused != nil {
			s.log.WarnContext(ctx, "plan: run-time changes not applied on this host",
				slog.String("plan", name), slog.String("error", refused.Error()))
		}
	}
	return nil
}

// catchUpChanges takes the changes this host's plans are behind on, if
// any: the scheduler's pass does it first, so that a rebuild from a peer
// (which replaces plan_changes once this service has started) reaches the
// plans this host runs.
func (s *Service) catchUpChanges(ctx context.Context) error {
	behind, err := db.New(s.rt.DB.R).PlanChangesBehind(ctx)
	if err != nil || len(behind) == 0 {
		return err
	}
	return s.rt.DB.Update(ctx, func(tx *store.Tx) error { return s.takeChangesBehind(ctx, tx) })
}

// overrideChanges records that the config file's declaration of name won
// over its changes so far: this host takes none of them.
func overrideChanges(ctx context.Context, q *db.Queries, name string) error {
	c, err := q.PlanChangeGet(ctx, name)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("plan changes: %w", err)
	}
	if err := q.PlanChangesTakenPut(ctx, db.PlanChangesTakenPutParams{Plan: name, Rev: c.Rev}); err != nil {
		return fmt.Errorf("plan changes taken: %w", err)
	}
	return nil
}
