// Package syncer is the sync service: it ships every backup to the plan's targets (another disk, S3, a JetStream object store) and verifies it there.
//
// This is the service's skeleton on the shared runtime (its database, its
// status endpoint, clean shutdown); its behaviour arrives with its own issue.
package syncer

import (
	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	lbsql "lifeboat.dev/sql"
)

// Name is the service's name on the bus and on disk.
const Name = events.ServiceSync

// Spec describes the service to the runtime.
func Spec() (service.Spec, error) {
	migrations, err := lbsql.Migrations(Name)
	if err != nil {
		return service.Spec{}, err
	}
	return service.Spec{
		Name:        Name,
		Description: "Lifeboat sync (skeleton): status only; shipping backups to their targets comes with its issue",
		Migrations:  migrations,
	}, nil
}
