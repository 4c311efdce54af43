#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on a loopback port for the tests.
# Usage: source .ci/postgres.sh   (exports LIFECYCLE_TEST_POSTGRES; stops it on exit)
# The port is LIFECYCLE_CI_PGPORT (default 54329); PGPORT, a client setting, is ignored.
# The server's binaries: those of pg_ctl on PATH, else the newest /usr/lib/postgresql/*/bin,
# else Debian's postgresql, installed with apt-get.
# When the server does not start, it prints its log's path and tail, removes the cluster's
# folder, and fails (status 1).
set -euo pipefail
LIFECYCLE_CI_PGPORT="${LIFECYCLE_CI_PGPORT:-54329}"
pgbin() {
    if command -v pg_ctl >/dev/null; then dirname "$(readlink -f "$(command -v pg_ctl)")"; return; fi
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}
if [ -z "$(pgbin)" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PGBIN="$(pgbin)"
PGDATA_DIR="$(mktemp -d /tmp/lifecycle-pg.XXXXXX)"
PGLOG="$(mktemp /tmp/lifecycle-pg-log.XXXXXX)"  # outside the cluster: kept when it fails
as_pg() {  # the server refuses to run as root
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
[ "$(id -u)" = 0 ] && chown postgres "$PGDATA_DIR" "$PGLOG"
if ! as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -A trust -U postgres >/dev/null 2>"$PGLOG" ||
    ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGLOG" -w \
        -o "-p $LIFECYCLE_CI_PGPORT -k $PGDATA_DIR -c listen_addresses=127.0.0.1 -c max_connections=50" \
        start >/dev/null; then
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PGDATA_DIR"
    echo "PostgreSQL did not start on 127.0.0.1:$LIFECYCLE_CI_PGPORT (its cluster, $PGDATA_DIR, is removed); the end of its log, $PGLOG:" >&2
    tail -n 20 "$PGLOG" >&2
    return 1 2>/dev/null || exit 1
fi
export LIFECYCLE_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$LIFECYCLE_CI_PGPORT/postgres"
stop_postgres() {
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$PGDATA_DIR" "$PGLOG"
}
trap stop_postgres EXIT
echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on $LIFECYCLE_TEST_POSTGRES"
