GO      ?= go
PKGS    := ./...

.PHONY: all build run test unit lint fmt clean

all: build

build:
	$(GO) build -o bin/worker ./cmd/worker
	$(GO) build -o bin/dbusers ./cmd/dbusers
	$(GO) build -o bin/dbusers-api ./cmd/dbusers-api

## run: the worker on its embedded NATS with the dev config (deploy/dev.yaml),
## and dbusers-api beside it (deploy/api-dev.yaml)
run:
	scripts/run-dev.sh

## test: vet, then every test (unit and integration, against the local
## MariaDB and in-process nats-servers) with the race detector; then the
## flood test again without it, alone on the machine, since its bound is a
## time ratio that the race detector's slowdown and the other packages'
## load would decide. -parallel 8: most integration tests spend their time
## waiting (lease expiries, ack waits, retry budgets, server start-ups), so
## more of them run at once than the default of one per core. ./test/,
## the longest package by far, is named first so that go test builds and
## starts it first, and the other packages run beside it
test:
	scripts/mariadb-up.sh
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -parallel 8 -timeout 15m $(if $(filter ./...,$(PKGS)),./test/) $(PKGS)
	$(GO) test -count=1 -timeout 5m -run '^TestFloodOfInvalidJobs$$' ./test/

## unit: the tests that need no MariaDB
unit:
	$(GO) test -race -count=1 ./internal/config/ ./internal/vault/ ./internal/jobs/ ./internal/natsserver/ ./internal/streams/ ./internal/natsconn/

lint:
	@test -z "$$(gofmt -l .)" || { gofmt -l .; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@latest $(PKGS)

clean:
	rm -rf bin data

## bench: the performance benchmark (not part of test): the
## worker against direct SQL on the local MariaDB, with a worker CPU
## profile; prints a table and writes docs/benchmarks.md. Quick run:
## make bench BENCH_FLAGS=-scale=0.1
.PHONY: bench
BENCH_FLAGS ?=
bench:
	scripts/mariadb-up.sh
	$(GO) build -o bin/dbusers-bench ./cmd/dbusers-bench
	bin/dbusers-bench -out docs/benchmarks.md -cpuprofile bin/worker-rotation.pprof $(BENCH_FLAGS)
	@# The latency dbusers-api adds to a job (goal: at most 1 ms at
	@# p50), and 10,000 accounts listed through it vs the list jobs (goal:
	@# at most 1.5 times); see docs/api.md
	$(GO) test -run '^$$' -bench '^BenchmarkAPIAddedLatency$$' -benchtime 300x ./test/apitest/
	$(GO) test -run '^$$' -bench '^BenchmarkList10000$$' -benchtime 5x -timeout 20m ./test/apitest/

## fuzz: every fuzz target of the module (go test -list '^Fuzz'), one after
## another, each for FUZZTIME (make fuzz FUZZTIME=5m). Their seed corpora
## (testdata/fuzz/<FuzzName>/ and f.Add) run as unit tests in make test.
FUZZTIME ?= 30s

.PHONY: fuzz
fuzz:
	@list=$$($(GO) test -list '^Fuzz' $(PKGS)) || { echo "$$list"; exit 1; }; \
	echo "$$list" | awk '/^Fuzz/ { n[++c] = $$1 } /^ok/ { for (i = 1; i <= c; i++) print $$2, n[i]; c = 0 }' | \
	while read -r pkg name; do \
		echo "== $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done
