#!/usr/bin/env bash
# tidegate test suite: sets up what the tests need on a fresh Debian machine, then runs clippy
# (lints denied) and every test. Usage: scripts/test.sh [extra cargo test args]
#
# - Rust builds go to $CARGO_TARGET_DIR (default: $HOME/.cache/tidegate/target), outside the clone.
# - Services: with CI=true (or TIDEGATE_SERVICES=1) PostgreSQL is installed and started on a
#   private port for the storage tests, and the S3 backend drills run against moto (installed
#   from PyPI and started on loopback by crates/artifacts/s3-test.sh, with the artifacts crate's
#   `s3` feature). Without it, those tests skip and say how to run them.
# - Also with services: a single-host Slurm for the Slurm executor's tests and nftables/iproute2
#   for the egress ruleset test (scripts/slurm-services.sh; exports TIDEGATE_TEST_SLURM=1), and
#   schemathesis against `tidegate up` on loopback, bounded (scripts/schemathesis.sh: installed
#   from PyPI into a virtual environment; fails the run on any failure it finds).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidegate/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

log() { printf '== %s\n' "$*" >&2; }

need_services=0
if [ "${CI:-}" = "true" ] || [ "${TIDEGATE_SERVICES:-}" = "1" ]; then need_services=1; fi

if ! command -v cargo >/dev/null 2>&1; then
  log "cargo not found: install Rust (https://rustup.rs) and run again"
  exit 1
fi

apt_install() {
  # Install Debian packages if any is missing (needs root; services are started by hand below).
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  if [ -z "${TIDEGATE_APT_UPDATED:-}" ]; then apt-get update -qq >/dev/null; export TIDEGATE_APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

start_postgres() {
  apt_install postgresql
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  local dir=/tmp/tidegate-pg
  local port="${TIDEGATE_PG_PORT:-55432}"
  if ! "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1 && ! su postgres -c "$bin/pg_ctl -D $dir status" >/dev/null 2>&1; then
    rm -rf "$dir"
    mkdir -p "$dir" && chown postgres:postgres "$dir"
    su postgres -c "$bin/initdb -D $dir -A trust -U postgres" >/dev/null
    su postgres -c "$bin/pg_ctl -D $dir -l $dir/log -o '-p $port -k /tmp -c listen_addresses=127.0.0.1' -w -t 30 start" >/dev/null
  fi
  export TIDEGATE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  export TIDEGATE_PG_BIN="$bin" TIDEGATE_PG_DATA="$dir"
  log "PostgreSQL ready at $TIDEGATE_TEST_POSTGRES_URL"
}

# shellcheck source=scripts/slurm-services.sh
. scripts/slurm-services.sh

start_peers() {
  # The sanitizer benchmark's pandas peer, for the test that holds its output to tidegate's byte
  # for byte: pandas and numpy from PyPI in a virtual environment outside the clone.
  local venv="$HOME/.cache/tidegate/peers-venv"
  if ! "$venv/bin/python" -c "import pandas, numpy" >/dev/null 2>&1; then
    apt_install python3-venv
    log "installing pandas and numpy into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check pandas numpy
  fi
  export TIDEGATE_PEERS_PYTHON="$venv/bin/python"
}

if [ "$need_services" = 1 ]; then
  start_postgres
  start_slurm
  start_nftables
  start_peers
else
  log "services not started (set CI=true or TIDEGATE_SERVICES=1 to install and start PostgreSQL; tests that need it skip)"
fi

log "formatting (cargo fmt --check)"
cargo fmt --all --check

log "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

# S3 drills first, so that the workspace run's closing lines stay the last thing printed. Only
# tidegate-artifacts and its dependencies are built with the `s3` feature, in this separate step.
s3_status=0
if [ "$need_services" = 1 ]; then
  log "S3 drills against moto (crates/artifacts/s3-test.sh)"
  s3_started=$SECONDS
  # The `s3` code is outside the workspace build above, so lint it here too.
  cargo clippy -p tidegate-artifacts --features s3 --all-targets --locked -- -D warnings || s3_status=$?
  if [ "$s3_status" = 0 ]; then bash crates/artifacts/s3-test.sh || s3_status=$?; fi
  log "S3 step took $((SECONDS - s3_started)) s (exit $s3_status)"
else
  log "S3 drills skipped: run them with TIDEGATE_SERVICES=1 bash scripts/test.sh or crates/artifacts/s3-test.sh"
fi

# Schemathesis next, for the same reason, against the `tidegate` binary of the workspace's test
# build (built here once, with the features the test run uses, so the test run rebuilds nothing).
st_status=0
if [ "$need_services" = 1 ]; then
  log "schemathesis against the API (scripts/schemathesis.sh)"
  st_started=$SECONDS
  cargo test --workspace --locked --no-run || st_status=$?
  if [ "$st_status" = 0 ]; then
    TIDEGATE_BIN="$CARGO_TARGET_DIR/debug/tidegate" bash scripts/schemathesis.sh || st_status=$?
  fi
  log "schemathesis step took $((SECONDS - st_started)) s (exit $st_status)"
else
  log "schemathesis skipped: run it with TIDEGATE_SERVICES=1 bash scripts/test.sh or bash scripts/schemathesis.sh"
fi

log "tests"
test_status=0
cargo test --workspace --locked --no-fail-fast "$@" || test_status=$?

if [ "$s3_status" != 0 ]; then
  log "FAILED: S3 drills against moto (exit $s3_status; output above)"
  exit "$s3_status"
fi
if [ "$st_status" != 0 ]; then
  log "FAILED: schemathesis against the API (exit $st_status; output above)"
  exit "$st_status"
fi
exit "$test_status"
