#!/usr/bin/env bash
# make run: the demo target, then the worker on its embedded NATS with the
# dev config, and how to send it a first job.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/dev-setup.sh
# Built binaries, not `go run`: the worker is exec'd below, so it is the
# process make started and SIGTERM or Ctrl-C reach it directly; `go run`
# would stand in between, die on SIGTERM and leave the worker holding the
# port.
go build -o bin/worker ./cmd/worker
go build -o bin/dbusers ./cmd/dbusers
# The address the embedded NATS of deploy/dev.yaml listens on.
listen=$(awk '/^  embedded:/ { e = 1; next } e && /^    listen:/ { print $2; exit } /^  [a-z]/ { e = 0 }' deploy/dev.yaml)
url="nats://${listen}"
# And the one of its HTTP endpoints.
http=$(awk '/^http:/ { h = 1; next } h && /^  listen:/ { print $2; exit } /^[a-z]/ { h = 0 }' deploy/dev.yaml)
cat >&2 <<MSG

  dbusers worker (dev config deploy/dev.yaml), embedded NATS at ${url}
  Target "demo" = database demo_app on the local MariaDB.

  A first job, from another terminal, with the nats CLI
  (go install github.com/nats-io/natscli/nats@v0.5.0):

    nats -s ${url} req dbusers.jobs.demo.user.list '{"id":"first-list"}' -H Nats-Msg-Id:first-list
    nats -s ${url} stream get DBUSERS_RESULTS --last-for dbusers.results.demo.first-list

  Or with the platform's commands:

    export DBUSERS_NATS_URL=${url} DBUSERS_TARGET=demo
    bin/dbusers database-users-list
    bin/dbusers database-users-create --read-only my_reader

  Worker info (its public xkey):  nats -s ${url} req dbusers.info ''
  Metrics and health:              curl -s ${http}/readyz
  Stop with Ctrl-C.

MSG
exec bin/worker -config deploy/dev.yaml -log-format console
