#!/usr/bin/env bash
# Prepares the demo target of deploy/dev.yaml: MariaDB up, database demo_app
# and its protected user demo_app_4553, created the way the platform creates
# them, and the worker's least-privilege admin dbusers_admin (contract §5.7,
# exactly what the worker's start-up check allows) with a random password in
# data/dev-admin.password (mode 0600, read through password_file, never
# printed). Idempotent: an existing database or user is left as it is; the
# admin's password is set to the file's (a new one when the file is gone).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/mariadb-up.sh
# The protected user's password is the platform's business: a random one,
# shown nowhere.
pw=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkdir -p data
umask 077
if [ ! -s data/dev-admin.password ]; then
  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >data/dev-admin.password
fi
chmod 600 data/dev-admin.password
admin_pw=$(cat data/dev-admin.password)
# Passwords go to the client on stdin, never on its command line.
mariadb -uroot <<SQL
CREATE DATABASE IF NOT EXISTS demo_app;
CREATE USER IF NOT EXISTS 'demo_app_4553'@'%' IDENTIFIED BY '${pw}';
GRANT ALL PRIVILEGES ON demo_app.* TO 'demo_app_4553'@'%';
CREATE USER IF NOT EXISTS 'dbusers_admin'@'%' IDENTIFIED BY '${admin_pw}';
ALTER USER 'dbusers_admin'@'%' IDENTIFIED BY '${admin_pw}';
GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO 'dbusers_admin'@'%';
GRANT SELECT ON mysql.* TO 'dbusers_admin'@'%';
GRANT ALL PRIVILEGES ON \`demo\\_app\`.* TO 'dbusers_admin'@'%' WITH GRANT OPTION;
SQL
echo "dev-setup: database demo_app with protected user demo_app_4553 is ready;" \
  "the worker logs in as dbusers_admin (password in data/dev-admin.password)" >&2
