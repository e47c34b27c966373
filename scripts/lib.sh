# Shared by scripts/demo and scripts/test. Sourced, not run.
#
# Everything here is idempotent: it installs what is missing and skips what is there.
# Clusters are throwaway, owned by the `postgres` OS user, on a private socket
# directory and port; nothing here touches a server it did not start.

set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_MAJOR=15
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config}"
# Overridable, to run against another installation of the same major (e.g. a private copy).
PGBIN="${PGBIN:-/usr/lib/postgresql/${PG_MAJOR}/bin}"
PGXS_DIR="${PGXS_DIR:-/usr/lib/postgresql/${PG_MAJOR}/lib/pgxs}"
PGRX_VERSION=0.18.1
# pgrx appends a Rust backtrace to every DETAIL when this is set.
unset RUST_BACKTRACE

log() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

install_prerequisites() {
    local missing=()
    # postgresql-NN-cron: pg_cron, for the timed-transition end-to-end test;
    # python3-psycopg: the Python example; python3-sqlalchemy, python3-psycopg2: the ORM
    # example (examples/python/orm_sqlalchemy.py); graphviz: scripts/diagrams; bc: bench/run.
    for pkg in postgresql-${PG_MAJOR} postgresql-server-dev-${PG_MAJOR} postgresql-${PG_MAJOR}-cron libclang-dev clang sudo pkg-config \
               python3-psycopg python3-sqlalchemy python3-psycopg2 graphviz make bc; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    # The Node example needs node and npm; any recent Node will do (Debian's if none is there).
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        missing+=(nodejs npm)
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! cargo pgrx --version 2>/dev/null | grep -q "${PGRX_VERSION}"; then
        log "installing cargo-pgrx ${PGRX_VERSION} (a few minutes, once)"
        cargo install cargo-pgrx --version "${PGRX_VERSION}" --locked
    fi
    if ! grep -qs "pg${PG_MAJOR}" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
        log "cargo pgrx init --pg${PG_MAJOR} ${PG_CONFIG}"
        cargo pgrx init --pg${PG_MAJOR} "${PG_CONFIG}"
    fi
}

install_extension() {
    log "building and installing pg_statemachine into $(${PG_CONFIG} --pkglibdir)"
    # The Makefile's install target, as users run it.
    make -C "$REPO" --no-print-directory install PG_CONFIG="${PG_CONFIG}" PG_MAJOR="${PG_MAJOR}"
}

# start_cluster DIR PORT: a throwaway cluster owned by postgres, socket in DIR/socket.
# PG_EXTRA_OPTS: further server options (default: fsync off, tests need no durability).
start_cluster() {
    local dir="$1" port="$2"
    mkdir -p "$dir"
    chown postgres: "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        runuser -u postgres -- "$PGBIN/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    runuser -u postgres -- mkdir -p "$dir/socket"
    if ! runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        runuser -u postgres -- env -u RUST_BACKTRACE "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
            -o "-p $port -k $dir/socket -c listen_addresses='' -c max_connections=120 ${PG_EXTRA_OPTS--c fsync=off}" start >/dev/null
    fi
    export PGHOST="$dir/socket" PGPORT="$port" PGUSER=postgres
}

# restart_cluster DIR PORT: after ALTER SYSTEM of a setting that needs a restart.
restart_cluster() {
    local dir="$1" port="$2"
    stop_cluster "$dir"
    start_cluster "$dir" "$port"
}

stop_cluster() {
    local dir="$1"
    if [ -f "$dir/data/PG_VERSION" ]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    fi
}
