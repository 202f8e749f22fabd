// Package jobtracker is the job-tracker service: it tracks the jobs runners report and reconciles them after a disaster (lost, buried, retried, killed).
//
// This is the service's skeleton on the shared runtime (its database, its
// status endpoint, clean shutdown); its behaviour arrives with its own issue.
package jobtracker

import (
	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	lbsql "lifeboat.dev/sql"
)

// Name is the service's name on the bus and on disk.
const Name = events.ServiceJobTracker

// Spec describes the service to the runtime.
func Spec() (service.Spec, error) {
	migrations, err := lbsql.Migrations(Name)
	if err != nil {
		return service.Spec{}, err
	}
	return service.Spec{
		Name:        Name,
		Description: "Lifeboat job-tracker (skeleton): status only; tracking and reconciling jobs comes with its issue",
		Migrations:  migrations,
	}, nil
}
