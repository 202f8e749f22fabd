module lifeboat.dev/integration

go 1.26.8

require (
	github.com/nats-io/nats.go v1.55.0
	golang.org/x/tools v0.52.0
	lifeboat.dev/events v0.0.0
	lifeboat.dev/pkg v0.0.0-00010101000000-000000000000
)

require (
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/nats-io/nkeys v0.4.16 // indirect
	github.com/nats-io/nuid v1.0.1 // indirect
	github.com/santhosh-tekuri/jsonschema/v6 v6.0.2 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)

replace lifeboat.dev/events => ../events

replace lifeboat.dev/pkg => ../pkg

replace lifeboat.dev/sql => ../sql
