# Lifeboat. `make run` starts the control plane with its embedded defaults;
# `make test` runs every test. Both install what they need themselves: Go
# tools are built once into $(TOOLS) (outside the repo) and reused; Debian
# packages (bind9, dnsutils, sqlite3) are installed with apt-get when missing
# and the machine allows it.

SHELL   := bash
GO      ?= go
TOOLS   ?= $(HOME)/.cache/lifeboat-tools
TOOLBIN := $(TOOLS)/bin
SQLC    := $(TOOLBIN)/sqlc
STATICCHECK := $(TOOLBIN)/staticcheck
NATSCLI := $(TOOLBIN)/nats
SQLC_VERSION := v1.31.1
STATICCHECK_VERSION := v0.8.2
NATSCLI_VERSION := v0.5.1
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Every package of every module of the workspace.
PKGS    := lifeboat.dev/...
TESTFLAGS ?= -p 2 -timeout 30m
DATA    ?= .data
IMAGE   ?= lifeboat:local

export LIFEBOAT_SQLC := $(SQLC)

.PHONY: all build run test test-long test-short gen gen-check fmt-check lint bench tools deps clean image e2e-compose

all: build

build: bin/lifeboat

bin/lifeboat: FORCE
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/lifeboat ./tools/lifeboat

FORCE:

## run: the control plane, every service, embedded NATS on 127.0.0.1:4222,
## status on http://127.0.0.1:9180, data under ./.data
run: build
	./bin/lifeboat up --data $(DATA)

## test: the whole of `make lint` first, then every test of every module,
## with the real parts they need
test: tools deps lint
	$(GO) test $(TESTFLAGS) $(PKGS)

## test-long: the soak modes, too long for make test: the kill -9 suite of
## sync's transfers at $(KILLS) kills (make test runs 30)
KILLS ?= 300
test-long: tools deps
	LIFEBOAT_KILLS=$(KILLS) $(GO) test -count=1 -v -timeout 60m -run 'Kill9' lifeboat.dev/pkg/target/remote

## image: the lifeboat Docker image FROM scratch (deploy/Dockerfile) over
## the static binary, tagged $(IMAGE); see deploy/README.md
image:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o deploy/.build/lifeboat ./tools/lifeboat
	docker build --tag $(IMAGE) deploy

## e2e-compose: deploy/docker-compose.yml on the real Docker engine (its own
## image, project and credentials): three hosts form one cluster, survive
## docker kill and a network partition; all removed afterwards. make test
## runs it too
e2e-compose:
	$(GO) test -count=1 -v -timeout 10m -run '^TestCompose' lifeboat.dev/integration

## gen: sqlc query code and the events' JSON Schemas
gen: $(SQLC)
	$(SQLC) generate
	cd events && $(GO) generate ./...

## fmt-check: every Go file is gofmt-clean
fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed (run gofmt -w):"; echo "$$out"; exit 1; fi

## lint: gofmt, go vet, staticcheck
lint: fmt-check $(STATICCHECK)
	$(GO) vet $(PKGS)
	$(STATICCHECK) $(PKGS)

## bench: Go benchmarks and peers (cp, sqlite3 .backup, nats bench, BIND,
## a JetStream object store, rsync), JSON report in bench/out/
bench: build tools deps $(NATSCLI)
	mkdir -p bench/out
	LIFEBOAT_NATS=$(NATSCLI) $(GO) run ./bench -out bench/out -lifeboat bin/lifeboat

tools: $(SQLC) $(STATICCHECK)

$(SQLC):
	@mkdir -p $(TOOLBIN)
	@echo "building sqlc $(SQLC_VERSION) into $(TOOLBIN) (once; about 2 minutes)"
	cd /tmp && GOBIN=$(TOOLBIN) CGO_ENABLED=1 GOFLAGS= $(GO) install github.com/sqlc-dev/sqlc/cmd/sqlc@$(SQLC_VERSION)

$(NATSCLI):
	@mkdir -p $(TOOLBIN)
	@echo "building the nats CLI $(NATSCLI_VERSION) into $(TOOLBIN) (once; about 2 minutes)"
	cd /tmp && GOBIN=$(TOOLBIN) GOFLAGS= $(GO) install github.com/nats-io/natscli/nats@$(NATSCLI_VERSION)

$(STATICCHECK):
	@mkdir -p $(TOOLBIN)
	@echo "building staticcheck $(STATICCHECK_VERSION) into $(TOOLBIN) (once; about a minute)"
	cd /tmp && GOBIN=$(TOOLBIN) GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

## deps: the real servers and CLIs the tests drive (BIND, dig, sqlite3) and
## make bench's peers (rsync)
deps:
	@bash .ci/deps.sh

clean:
	rm -rf bin bench/out deploy/.build $(DATA)
