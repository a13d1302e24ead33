GO      ?= go
PKGS    := ./...

.PHONY: all build run test unit lint fmt clean

all: build

build:
	$(GO) build -o bin/worker ./cmd/worker
	$(GO) build -o bin/dbusers ./cmd/dbusers

## run: the worker on its embedded NATS with the dev config (deploy/dev.yaml)
run:
	scripts/run-dev.sh

## test: vet, then every test (unit and integration, against the local
## MariaDB and in-process nats-servers) with the race detector
test:
	scripts/mariadb-up.sh
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

## unit: the tests that need no MariaDB
unit:
	$(GO) test -race -count=1 ./internal/config/ ./internal/vault/ ./internal/jobs/ ./internal/natsserver/ ./internal/streams/

lint:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest $(PKGS)

clean:
	rm -rf bin data
