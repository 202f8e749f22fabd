module lifeboat.dev/sql

go 1.26.8
