#!/usr/bin/env bash
# Runs the S3 backend drills of tidegate-artifacts against moto, an S3-compatible test server
# installed from PyPI. Usage: crates/artifacts/s3-test.sh [extra cargo test args]
# (from anywhere in the repository; scripts/test.sh runs it when CI=true or TIDEGATE_SERVICES=1).
#
# - Installs "moto[server]" with the machine's python3 if it is missing (pip from apt if needed;
#   --break-system-packages where the interpreter is marked externally managed).
# - Starts moto on 127.0.0.1 only, on TIDEGATE_S3_TEST_PORT or else a free port, waits (bounded)
#   for it while checking it is still alive, creates the bucket, and stops it on exit.
# - Runs `cargo test -p tidegate-artifacts --features s3 --test s3` with the endpoint in
#   TIDEGATE_S3_TEST_ENDPOINT and the bucket in TIDEGATE_S3_TEST_BUCKET.
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf '== s3: %s\n' "$*" >&2; }
fail() { log "$*"; exit 1; }

command -v python3 >/dev/null 2>&1 || [ "$(id -u)" = 0 ] || fail "python3 not found: install it and run again"

# pip for the machine's python3 (Debian ships it separately).
if ! python3 -m pip --version >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing python3-pip"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-pip >/dev/null
  else
    fail "pip for python3 not found: install python3-pip and run again"
  fi
fi

# moto and boto3 (boto3 comes with moto; it creates the bucket below).
if ! python3 -c 'import moto.server, boto3' >/dev/null 2>&1; then
  pip_args=(install --quiet --disable-pip-version-check "moto[server]")
  # PEP 668: Debian marks its python3 as externally managed; pip then refuses without this flag.
  if python3 -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    pip_args+=(--break-system-packages)
  fi
  log "installing moto[server] from PyPI"
  pip_log="$(mktemp)"
  started=$SECONDS
  if ! PIP_ROOT_USER_ACTION=ignore python3 -m pip "${pip_args[@]}" >"$pip_log" 2>&1; then
    cat "$pip_log" >&2; rm -f "$pip_log"
    fail "pip install moto[server] failed"
  fi
  rm -f "$pip_log"
  python3 -c 'import moto.server, boto3' || fail "moto installed but cannot be imported"
  log "moto installed in $((SECONDS - started)) s"
fi

if [ -n "${TIDEGATE_S3_TEST_PORT:-}" ]; then
  port="$TIDEGATE_S3_TEST_PORT"
else
  # A free loopback port (the kernel picks it; it is released just before moto binds it).
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
fi
bucket="${TIDEGATE_S3_TEST_BUCKET:-tidegate-test}"
endpoint="http://127.0.0.1:$port"

server_log="$(mktemp)"
python3 -m moto.server -H 127.0.0.1 -p "$port" >"$server_log" 2>&1 &
pid=$!
stop() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$server_log"
}
trap stop EXIT

# Readiness: bounded (30 s), and give up at once if the server died.
deadline=$((SECONDS + 30))
until python3 -c "import urllib.request; urllib.request.urlopen('$endpoint/moto-api/', timeout=2)" 2>/dev/null; do
  if ! kill -0 "$pid" 2>/dev/null; then
    cat "$server_log" >&2
    fail "moto exited before it was ready"
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    cat "$server_log" >&2
    fail "moto not ready on $endpoint after 30 s"
  fi
  sleep 0.2
done
log "moto ready at $endpoint (pid $pid)"

# Create the bucket with boto3, signed (SigV4) like any S3 client.
python3 - "$endpoint" "$bucket" <<'PY'
import sys
import boto3
endpoint, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
s3.create_bucket(Bucket=bucket)
PY

export TIDEGATE_S3_TEST_ENDPOINT="$endpoint"
export TIDEGATE_S3_TEST_BUCKET="$bucket"

cargo test -p tidegate-artifacts --features s3 --test s3 --locked "$@"
