package backupscheduler

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"lifeboat.dev/events"
	"lifeboat.dev/pkg/backup"
	"lifeboat.dev/pkg/service"
	"lifeboat.dev/pkg/storekind/sqlite"
)

// selfKind is the store kind of lifeboat-self: every lifeboat service
// database under a data directory, each copied by the sqlite kind (an
// online copy that passes integrity_check) into <service>/store.db of the
// payload. A service this process does not run has no database and is
// left out.
type selfKind struct {
	dataDir string
}

// Name returns "sqlite-set".
func (k selfKind) Name() string { return StoreSQLiteSet }

// Dump copies each service database. ConsistentAt is the earliest of the
// copies' own: everything committed to any of them before it is in the
// payload.
func (k selfKind) Dump(ctx context.Context, payloadDir string) (backup.Info, error) {
	var info backup.Info
	n := 0
	for _, svc := range events.Services {
		src := service.DBPath(k.dataDir, svc)
		if _, err := os.Stat(src); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		dst := filepath.Join(payloadDir, svc)
		if err := os.Mkdir(dst, 0o750); err != nil {
			return backup.Info{}, fmt.Errorf("%s: %w", svc, err)
		}
		got, err := sqlite.New(src).Dump(ctx, dst)
		if err != nil {
			return backup.Info{}, fmt.Errorf("%s: %w", svc, err)
		}
		if n == 0 || got.ConsistentAt.Before(info.ConsistentAt) {
			info.ConsistentAt = got.ConsistentAt
		}
		n++
	}
	if n == 0 {
		return backup.Info{}, fmt.Errorf("no lifeboat service database under %s (is it the data directory of `lifeboat up`?)", k.dataDir)
	}
	return info, nil
}

// Load restores each service database of the payload into
// <target>/<service>/state.db (target is a data directory). Stop the
// services first.
func (k selfKind) Load(ctx context.Context, payloadDir, target string) error {
	n := 0
	for _, svc := range events.Services {
		src := filepath.Join(payloadDir, svc)
		if _, err := os.Stat(filepath.Join(src, sqlite.PayloadName)); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := sqlite.New(service.DBPath(target, svc)).Load(ctx, src, service.DBPath(target, svc)); err != nil {
			return fmt.Errorf("%s: %w", svc, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("%s: the payload holds no service database (is it a backup of %s?)", payloadDir, SelfPlan)
	}
	return nil
}
