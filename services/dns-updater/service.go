// Package dnsupdater is the dns-updater service: it points an activated instance's DNS name at its new host and verifies the change.
//
// This is the service's skeleton on the shared runtime (its database, its
// status endpoint, clean shutdown); its behaviour arrives with its own issue.
package dnsupdater

import (
	"lifeboat.dev/events"
	"lifeboat.dev/pkg/service"
	lbsql "lifeboat.dev/sql"
)

// Name is the service's name on the bus and on disk.
const Name = events.ServiceDNSUpdater

// Spec describes the service to the runtime.
func Spec() (service.Spec, error) {
	migrations, err := lbsql.Migrations(Name)
	if err != nil {
		return service.Spec{}, err
	}
	return service.Spec{
		Name:        Name,
		Description: "Lifeboat dns-updater: points an activated instance's DNS name at its new host and verifies the change",
		Migrations:  migrations,
	}, nil
}
