#!/usr/bin/env bash
# make run: the demo target, then the worker on its embedded NATS with the
# dev config, and how to send it a first job.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/dev-setup.sh
url="nats://127.0.0.1:14222"
cat >&2 <<MSG

  dbusers worker (dev config deploy/dev.yaml), embedded NATS at ${url}
  Target "demo" = database demo_app on the local MariaDB.

  A first job, from another terminal, with the nats CLI
  (go install github.com/nats-io/natscli/nats@v0.5.0):

    nats -s ${url} req dbusers.jobs.demo.user.list '{"id":"first-list"}' -H Nats-Msg-Id:first-list
    nats -s ${url} stream get DBUSERS_RESULTS --last-for dbusers.results.demo.first-list

  Or with the platform's commands (make build, then):

    export DBUSERS_NATS_URL=${url} DBUSERS_TARGET=demo
    bin/dbusers database-users-list
    bin/dbusers database-users-create --read-only my_reader

  Worker info (its public xkey):  nats -s ${url} req dbusers.info ''
  Metrics and health:              curl -s 127.0.0.1:14280/readyz
  Stop with Ctrl-C.

MSG
exec go run ./cmd/worker -config deploy/dev.yaml -log-format console
