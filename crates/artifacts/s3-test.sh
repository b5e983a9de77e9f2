#!/usr/bin/env bash
# Runs the S3 backend drills of tidegate-artifacts against moto, an S3-compatible test server
# installed from PyPI. Usage: crates/artifacts/s3-test.sh (from anywhere in the repository).
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v moto_server >/dev/null 2>&1; then
  python3 -m pip install --quiet "moto[server]"
fi

port="${TIDEGATE_S3_TEST_PORT:-47123}"
bucket="tidegate-test"
log="$(mktemp)"
moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT

# Wait for readiness (bounded), checking the server is still alive.
ready=""
for _ in $(seq 1 50); do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "moto_server exited:" >&2; cat "$log" >&2; exit 1
  fi
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
    ready=1; break
  fi
  sleep 0.2
done
[ -n "$ready" ] || { echo "moto_server not ready on port $port" >&2; cat "$log" >&2; exit 1; }

# Create the bucket with boto3 (a dependency of moto), signed like any S3 client.
python3 - "$port" "$bucket" <<'PY'
import sys, boto3
port, bucket = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
s3.create_bucket(Bucket=bucket)
PY

export TIDEGATE_S3_TEST_ENDPOINT="http://127.0.0.1:$port"
export TIDEGATE_S3_TEST_BUCKET="$bucket"
CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" cargo test -p tidegate-artifacts --features s3 --test s3 -- --include-ignored
