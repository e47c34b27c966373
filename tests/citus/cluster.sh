# Sourced by tests/citus/run (and bench/citus): a throwaway Citus cluster on this machine,
# a coordinator and NWORKERS workers, each its own PostgreSQL instance owned by the
# postgres OS user, listening on 127.0.0.1 only (Citus's nodes connect to each other by
# host and port), trust authentication. Nothing here touches a server it did not start.
#   citus_start DIR BASEPORT NWORKERS   coordinator on BASEPORT, workers on BASEPORT+1..
#   citus_stop DIR
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

citus_node() {   # citus_node DIR PORT: init and start one instance with citus preloaded
    local dir="$1" port="$2"
    mkdir -p "$dir"; chown postgres: "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        runuser -u postgres -- "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync \
            -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    runuser -u postgres -- mkdir -p "$dir/socket"
    runuser -u postgres -- env -u RUST_BACKTRACE "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-p $port -k $dir/socket -c listen_addresses=127.0.0.1 -c max_connections=200 \
            -c shared_preload_libraries=citus -c fsync=off -c max_prepared_transactions=200 \
            -c citus.max_client_connections=150 ${CITUS_EXTRA_OPTS:-}" start >/dev/null
}

citus_start() {
    local dir="$1" base="$2" n="$3" i
    citus_node "$dir/coordinator" "$base"
    for i in $(seq 1 "$n"); do citus_node "$dir/worker$i" $((base + i)); done
    export PGHOST=127.0.0.1 PGPORT="$base" PGUSER=postgres
}

# citus_db DB BASEPORT NWORKERS: a database with citus on every node and the workers added.
citus_db() {
    local db="$1" base="$2" n="$3" i
    for i in $(seq 0 "$n"); do
        "$PGBIN/psql" -X -q -h 127.0.0.1 -p $((base + i)) -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
        "$PGBIN/psql" -X -q -h 127.0.0.1 -p $((base + i)) -d "$db" -c "CREATE EXTENSION citus" >/dev/null
    done
    "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$base" -d "$db" -v ON_ERROR_STOP=1 \
        -c "SELECT citus_set_coordinator_host('127.0.0.1', $base)" >/dev/null
    for i in $(seq 1 "$n"); do
        "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$base" -d "$db" -v ON_ERROR_STOP=1 \
            -c "SELECT citus_add_node('127.0.0.1', $((base + i)))" >/dev/null
    done
}

citus_stop() {
    local dir="$1" d
    for d in "$dir"/coordinator "$dir"/worker*; do
        [ -f "$d/data/PG_VERSION" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d/data" -m fast stop >/dev/null 2>&1 || true
    done
}
