#!/usr/bin/env bash
# The shared MLflow tracking server of `make mlflow-server`: runs in PostgreSQL (Debian's
# postgresql package), artifacts in a local folder served by the tracking server itself,
# so every client logs to `mlflow-artifacts:/` and none needs the folder mounted.
#
#   scripts/mlflow-server.sh [serve] [extra mlflow server options]   the database, then the server (foreground)
#   scripts/mlflow-server.sh db        the database only (installed, created, started); prints its URI
#   scripts/mlflow-server.sh stop-db   stops the database (the server's Ctrl-C leaves it running)
#
# Settings (environment; relative paths are taken from the current folder):
#   MER_SERVER_DIR        outputs/mlflow-server        the folders below default under it
#   MER_PG_DATA           $MER_SERVER_DIR/postgres     PostgreSQL's cluster (created on first use)
#   MER_MLFLOW_ARTIFACTS  $MER_SERVER_DIR/artifacts    where the server keeps the runs' artifacts
#   MER_MLFLOW_HOST       127.0.0.1                    MER_MLFLOW_PORT 5001   MER_MLFLOW_WORKERS 2
#   MER_PG_PORT           5432                         names the socket only: no TCP port is opened
#   MER_PG_DATABASE       mlflow                       MER_PG_BIN /usr/lib/postgresql/15/bin
set -euo pipefail

command=${1:-serve}
[ $# -gt 0 ] && shift

absolute() { case $1 in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }
fail() { echo "error: $*" >&2; exit 1; }

server_dir=$(absolute "${MER_SERVER_DIR:-outputs/mlflow-server}")
pg_data=$(absolute "${MER_PG_DATA:-$server_dir/postgres}")
artifacts=$(absolute "${MER_MLFLOW_ARTIFACTS:-$server_dir/artifacts}")
host=${MER_MLFLOW_HOST:-127.0.0.1}
port=${MER_MLFLOW_PORT:-5001}
workers=${MER_MLFLOW_WORKERS:-2}
pg_port=${MER_PG_PORT:-5432}
database=${MER_PG_DATABASE:-mlflow}
pg_bin=${MER_PG_BIN:-/usr/lib/postgresql/15/bin}
# PostgreSQL's superuser role: initdb names it, so nothing depends on the OS user's name.
role=mlflow

# PostgreSQL refuses to run as root: as root it runs as Debian's `postgres` user.
if [ "$(id -u)" = 0 ]; then
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi

install_postgres() {
    [ -x "$pg_bin/initdb" ] && return
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        fail "PostgreSQL is not installed ($pg_bin/initdb is missing): as root, apt-get install postgresql (Debian 12: PostgreSQL 15), or set MER_PG_BIN"
    fi
    echo "installing Debian's postgresql package (once)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q postgresql >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; } \
        || fail "apt-get install postgresql failed"
    [ -x "$pg_bin/initdb" ] || fail "postgresql installed, but $pg_bin/initdb is missing: set MER_PG_BIN to its bin folder"
}

start_db() {
    install_postgres
    # The socket lives in the cluster's folder: its path must fit a Unix socket name.
    [ ${#pg_data} -le 90 ] || fail "MER_PG_DATA is too long for PostgreSQL's socket path (${#pg_data} > 90 characters): $pg_data"
    mkdir -p "$pg_data"
    if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$pg_data"; fi
    chmod 700 "$pg_data"
    as_pg test -w "$pg_data" || fail "the postgres user cannot reach $pg_data (a folder above it is closed to other users); set MER_PG_DATA elsewhere"
    if [ ! -s "$pg_data/PG_VERSION" ]; then
        echo "creating the PostgreSQL cluster in $pg_data" >&2
        as_pg "$pg_bin/initdb" -D "$pg_data" -U "$role" --auth=trust -E UTF8 --no-instructions >/dev/null
        # Only a Unix socket in the cluster's own mode-700 folder: no TCP port, and only its
        # owner (and root) can connect, which is what makes `trust` authentication safe here.
        printf "listen_addresses = ''\nunix_socket_directories = '%s'\nport = %s\n" "$pg_data" "$pg_port" >>"$pg_data/postgresql.conf"
    fi
    if ! as_pg "$pg_bin/pg_ctl" -D "$pg_data" status >/dev/null 2>&1; then
        as_pg "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_data/postgres.log" -w -t 60 start >/dev/null \
            || fail "PostgreSQL did not start; see $pg_data/postgres.log"
    fi
    local exists
    exists=$(as_pg "$pg_bin/psql" -h "$pg_data" -p "$pg_port" -U "$role" -d postgres -tAc \
        "select 1 from pg_database where datname = '$database'")
    [ "$exists" = 1 ] || as_pg "$pg_bin/createdb" -h "$pg_data" -p "$pg_port" -U "$role" "$database"
}

# psycopg2 named: SQLAlchemy 2.1 takes a bare postgresql:// for psycopg 3, which is not installed.
backend_uri() { printf 'postgresql+psycopg2://%s@/%s?host=%s&port=%s\n' "$role" "$database" "$pg_data" "$pg_port"; }

case $command in
    db)
        start_db
        backend_uri
        ;;
    stop-db)
        [ -s "$pg_data/PG_VERSION" ] || fail "no PostgreSQL cluster in $pg_data"
        as_pg "$pg_bin/pg_ctl" -D "$pg_data" -w -m fast stop
        ;;
    serve)
        start_db
        mkdir -p "$artifacts"
        command -v mlflow >/dev/null || fail "mlflow is not on PATH (make mlflow-server puts .venv/bin first)"
        echo "MLflow tracking server: http://$host:$port  (runs: PostgreSQL in $pg_data; artifacts: $artifacts)" >&2
        echo "clients: export MLFLOW_TRACKING_URI=http://$host:$port; python train.py logger=mlflow_server" >&2
        export MLFLOW_DISABLE_TELEMETRY=${MLFLOW_DISABLE_TELEMETRY:-true}
        # Its job runner serves GenAI features (scorers, trace rollups) training runs never use,
        # and starts eight more processes.
        export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
        exec mlflow server --backend-store-uri "$(backend_uri)" --serve-artifacts --artifacts-destination "$artifacts" \
            --host "$host" --port "$port" --workers "$workers" "$@"
        ;;
    *)
        fail "unknown command $command (serve, db or stop-db)"
        ;;
esac
