#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on a loopback port for the tests.
# Usage: source .ci/postgres.sh   (exports LIFECYCLE_TEST_POSTGRES; stops it on exit)
# Installs Debian's postgresql with apt-get when no server binaries are found.
set -euo pipefail
PGPORT="${PGPORT:-54329}"
pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(pgbin)" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PGBIN="$(pgbin)"
PGDATA_DIR="$(mktemp -d /tmp/lifecycle-pg.XXXXXX)"
as_pg() {  # the server refuses to run as root
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
[ "$(id -u)" = 0 ] && chown postgres "$PGDATA_DIR"
as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -A trust -U postgres >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" -w \
    -o "-p $PGPORT -k $PGDATA_DIR -c listen_addresses=127.0.0.1 -c max_connections=50" start >/dev/null
export LIFECYCLE_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$PGPORT/postgres"
stop_postgres() { as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast stop >/dev/null 2>&1 || true; rm -rf "$PGDATA_DIR"; }
trap stop_postgres EXIT
echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on $LIFECYCLE_TEST_POSTGRES"
