module lifeboat.dev/services/job-tracker

go 1.26.8

require (
	lifeboat.dev/events v0.0.0
	lifeboat.dev/pkg v0.0.0
	lifeboat.dev/sql v0.0.0
)

replace lifeboat.dev/events => ../../events

replace lifeboat.dev/pkg => ../../pkg

replace lifeboat.dev/sql => ../../sql
