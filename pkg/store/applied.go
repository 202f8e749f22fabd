package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"lifeboat.dev/pkg/store/internal/db"
)

// Applied records, in the batch, that the database has applied stream up to
// seq (it never goes backwards). The runtime calls it with the last
// message of each committed batch, so the position and the changes are
// durable together.
func (b *Batch) Applied(ctx context.Context, stream string, seq uint64) error {
	if err := b.tx.q.AppliedSet(ctx, db.AppliedSetParams{Stream: stream, Seq: int64(seq)}); err != nil {
		return fmt.Errorf("store: applied %s: %w", stream, err)
	}
	return nil
}

// ResetApplied sets stream's applied sequence to seq, also backwards: a
// rebuild from a peer's snapshot takes the peer's position.
func (tx *Tx) ResetApplied(ctx context.Context, stream string, seq uint64) error {
	if err := tx.q.AppliedReset(ctx, db.AppliedResetParams{Stream: stream, Seq: int64(seq)}); err != nil {
		return fmt.Errorf("store: applied %s: %w", stream, err)
	}
	return nil
}

// Applied returns the sequence of the last message of stream the database
// applied, 0 when it applied none.
func (d *DB) Applied(ctx context.Context, stream string) (uint64, error) {
	seq, err := db.New(d.R).AppliedGet(ctx, stream)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: applied %s: %w", stream, err)
	}
	return uint64(seq), nil
}

// Fence admits a decision of leader taken in epoch: it returns false, and
// records nothing, when the database already applied a decision of a
// later epoch of that leader (the decision comes from a deposed leader);
// otherwise it records epoch as the leader's highest and returns true.
func (tx *Tx) Fence(ctx context.Context, leader string, epoch uint64) (bool, error) {
	cur, err := tx.q.LeaderEpochGet(ctx, leader)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("store: leader epoch of %s: %w", leader, err)
	}
	if uint64(cur) > epoch {
		return false, nil
	}
	if err := tx.q.LeaderEpochSet(ctx, db.LeaderEpochSetParams{Leader: leader, Epoch: int64(epoch)}); err != nil {
		return false, fmt.Errorf("store: leader epoch of %s: %w", leader, err)
	}
	return true, nil
}

// LeaderEpoch is the highest epoch of leader whose decisions the database
// applied, 0 for none.
func (d *DB) LeaderEpoch(ctx context.Context, leader string) (uint64, error) {
	e, err := db.New(d.R).LeaderEpochGet(ctx, leader)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: leader epoch of %s: %w", leader, err)
	}
	return uint64(e), nil
}

// WakeWork wakes the work queue: jobs it skipped may be its to run now (this
// host became a leader).
func (d *DB) WakeWork() { d.wakeWork() }
