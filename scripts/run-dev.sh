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
go build -o bin/dbusers-api ./cmd/dbusers-api
# dbusers-api's token key: the HS256 key a platform would share with it,
# random, mode 0600, never printed (the dev token below is minted with it).
if [ ! -s data/api-token.key ]; then
  (umask 077 && head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n' >data/api-token.key)
fi
chmod 600 data/api-token.key
api_listen=$(awk '/^listen:/ { print $2; exit }' deploy/api-dev.yaml)
api_db=$(awk '/^  - id:/ { print $3; exit }' deploy/api-dev.yaml)
platform="127.0.0.1:14481"
token=$(bin/dbusers-api -config deploy/api-dev.yaml -print-token "${api_db}" -token-ttl 12h)
scalingo_cli="$(cd .. && pwd)/shared/tools/scalingo-cli/scalingo"
# The address the embedded NATS of deploy/dev.yaml listens on.
listen=$(awk '/^  embedded:/ { e = 1; next } e && /^    listen:/ { print $2; exit } /^  [a-z]/ { e = 0 }' deploy/dev.yaml)
url="nats://${listen}"
# And the one of its HTTP endpoints.
http=$(awk '/^http:/ { h = 1; next } h && /^  listen:/ { print $2; exit } /^[a-z]/ { h = 0 }' deploy/dev.yaml)
# The CLI's context (cmd/dbusers/context.go): bin/dbusers, run in this
# checkout, finds this worker and its first target without flags or
# exports; --nats-url, --target or their variables still win.
target=$(awk '/^targets:/ { t = 1; next } t && /^  - name:/ { print $3; exit }' deploy/dev.yaml)
prefix=$(awk '/^nats:/ { n = 1; next } n && /^  prefix:/ { print $2; exit } /^[a-z]/ { n = 0 }' deploy/dev.yaml)
printf '{"nats_url":"%s","target":"%s","prefix":"%s"}\n' "${url}" "${target}" "${prefix:-dbusers}" >data/cli-context.json.tmp
mv data/cli-context.json.tmp data/cli-context.json
cat >&2 <<MSG

  dbusers worker (dev config deploy/dev.yaml), embedded NATS at ${url}
  Target "${target}" = database demo_app on the local MariaDB.

  A first job, from another terminal, with the nats CLI
  (go install github.com/nats-io/natscli/nats@v0.5.0):

    nats -s ${url} req dbusers.jobs.demo.user.list '{"id":"first-list"}' -H Nats-Msg-Id:first-list
    nats -s ${url} stream get DBUSERS_RESULTS --last-for dbusers.results.demo.first-list

  Or with the platform's commands, in this directory (they find this
  worker and target "${target}" through data/cli-context.json):

    bin/dbusers database-users-list
    bin/dbusers database-users-create --read-only my_reader

  Worker info (its public xkey):  nats -s ${url} req dbusers.info ''
  Metrics and health:              curl -s ${http}/readyz

  The platform's database-users API and dashboard (dbusers-api, deploy/api-dev.yaml),
  database id ${api_db} = target demo:

    Dashboard:  http://${api_listen}/  and sign in with this token (valid 12 hours):

    ${token}

    The platform's own CLI (${scalingo_cli}),
    against a development stand-in of the platform's auth API on ${platform}:

    env HOME=${PWD}/data/scalingo-home SCALINGO_AUTH_URL=http://${platform} SCALINGO_API_URL=http://${platform} \\
      SCALINGO_DB_URL=http://${api_listen} SCALINGO_API_TOKEN=tk-us-dev DISABLE_UPDATE_CHECKER=true \\
      ${scalingo_cli} --app demo --addon ${api_db} database-users-list

    (then database-users-create [--read-only] <name>, database-users-update-password <name>,
    database-users-delete <name>)

  Stop with Ctrl-C.

MSG
# dbusers-api beside the worker: it waits for the worker's embedded NATS,
# and stops with the worker (Ctrl-C reaches both; -exit-with-parent ends it
# when the worker, which replaces this script, ends otherwise).
mkdir -p data/scalingo-home
bin/dbusers-api -config deploy/api-dev.yaml -log-format console -exit-with-parent -dev-platform "${platform}" &
exec bin/worker -config deploy/dev.yaml -log-format console
