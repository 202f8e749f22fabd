// Package restore is the restore service: it restores an instance's store from a backup, staged or in one step, and fails an instance over to its standby behind a lease.
//
// This is the service's skeleton on the shared runtime (its database, its
// status endpoint, clean shutdown); its behaviour arrives with its own issue.
package restore

import (
	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	lbsql "lifeboat.dev/sql"
)

// Name is the service's name on the bus and on disk.
const Name = events.ServiceRestore

// Spec describes the service to the runtime.
func Spec() (service.Spec, error) {
	migrations, err := lbsql.Migrations(Name)
	if err != nil {
		return service.Spec{}, err
	}
	return service.Spec{
		Name:        Name,
		Description: "Lifeboat restore (skeleton): status only; restores and failover come with its issue",
		Migrations:  migrations,
	}, nil
}
