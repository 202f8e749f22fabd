// Package backupscheduler is the backup-scheduler service: it takes consistent backups of each plan's store on its rolling schedule and prunes them by the schedule's retention rule.
//
// This is the service's skeleton on the shared runtime (its database, its
// status endpoint, clean shutdown); its behaviour arrives with its own issue.
package backupscheduler

import (
	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	lbsql "lifeboat.dev/sql"
)

// Name is the service's name on the bus and on disk.
const Name = events.ServiceBackupScheduler

// Spec describes the service to the runtime.
func Spec() (service.Spec, error) {
	migrations, err := lbsql.Migrations(Name)
	if err != nil {
		return service.Spec{}, err
	}
	return service.Spec{
		Name:        Name,
		Description: "Lifeboat backup-scheduler: takes consistent backups of each plan's store on its rolling schedule and prunes them by the schedule's retention rule",
		Migrations:  migrations,
	}, nil
}
