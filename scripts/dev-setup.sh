#!/usr/bin/env bash
# Prepares the demo target of deploy/dev.yaml: MariaDB up, database demo_app
# and its protected user demo_app_4553, created the way the platform creates
# them. Idempotent: an existing database or user is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/mariadb-up.sh
# The protected user's password is the platform's business: a random one,
# shown nowhere.
pw=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
mariadb -uroot <<SQL
CREATE DATABASE IF NOT EXISTS demo_app;
CREATE USER IF NOT EXISTS 'demo_app_4553'@'%' IDENTIFIED BY '${pw}';
GRANT ALL PRIVILEGES ON demo_app.* TO 'demo_app_4553'@'%';
SQL
mkdir -p data
echo "dev-setup: database demo_app with protected user demo_app_4553 is ready" >&2
