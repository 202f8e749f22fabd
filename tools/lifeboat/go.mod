module lifeboat.dev/tools/lifeboat

go 1.26.8

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/cobra v1.10.2 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
	lifeboat.dev/events v0.0.0
	lifeboat.dev/pkg v0.0.0
	lifeboat.dev/services/backup-scheduler v0.0.0
	lifeboat.dev/services/dns-updater v0.0.0
	lifeboat.dev/services/job-tracker v0.0.0
	lifeboat.dev/services/restore v0.0.0
	lifeboat.dev/services/sync v0.0.0
	lifeboat.dev/services/volume-monitor v0.0.0
	lifeboat.dev/sql v0.0.0
)

replace lifeboat.dev/events => ../../events

replace lifeboat.dev/pkg => ../../pkg

replace lifeboat.dev/sql => ../../sql

replace lifeboat.dev/services/backup-scheduler => ../../services/backup-scheduler

replace lifeboat.dev/services/sync => ../../services/sync

replace lifeboat.dev/services/restore => ../../services/restore

replace lifeboat.dev/services/job-tracker => ../../services/job-tracker

replace lifeboat.dev/services/volume-monitor => ../../services/volume-monitor

replace lifeboat.dev/services/dns-updater => ../../services/dns-updater
