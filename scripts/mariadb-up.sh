#!/usr/bin/env bash
# Makes sure the local MariaDB answers: starts it when it is down (as
# DEVELOPERS.md says), installs it first on a machine that lacks it.
set -euo pipefail

if mariadb-admin ping --silent >/dev/null 2>&1; then
  exit 0
fi
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "mariadb-up: installing mariadb-server" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null
  else
    echo "mariadb-up: MariaDB is not installed; install mariadb-server (10.11) and start it" >&2
    exit 1
  fi
fi
if mariadb-admin ping --silent >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "mariadb-up: MariaDB is down and only root can start it here: sudo $0" >&2
  exit 1
fi
echo "mariadb-up: starting MariaDB" >&2
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld 2>/dev/null || true
start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
for _ in $(seq 1 60); do
  if mariadb-admin ping --silent >/dev/null 2>&1; then
    echo "mariadb-up: MariaDB is up" >&2
    exit 0
  fi
  sleep 0.5
done
echo "mariadb-up: MariaDB did not answer within 30 s; see its error log (journalctl or /var/log/mysql)" >&2
exit 1
