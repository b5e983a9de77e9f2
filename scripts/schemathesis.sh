#!/usr/bin/env bash
# Runs schemathesis (property-based API testing from the OpenAPI document) against a control
# plane on loopback, bounded. Usage: scripts/schemathesis.sh (scripts/test.sh runs it when
# CI=true or TIDEGATE_SERVICES=1). Exits non-zero when schemathesis finds a failure.
#
# - Installs schemathesis (the version pinned in ST_VERSION) from PyPI into a virtual
#   environment under $HOME/.cache/tidegate (python3-venv from apt if python3 lacks venv).
# - Builds `tidegate` (or takes the binary in TIDEGATE_BIN) and starts `tidegate up` on
#   127.0.0.1 (a free port) in a temporary data directory, with the example fleet and
#   `edge-clinic` run by an agent; submits one job and stores one artifact so that the
#   operations on a job or an artifact reach their logic.
# - Runs schemathesis with the admin token (written by `tidegate up` to <data-dir>/admin.token)
#   as the bearer, the checks not_a_server_error, status_code_conformance,
#   response_schema_conformance, positive_data_acceptance and negative_data_rejection, a fixed seed
#   (TIDEGATE_SCHEMATHESIS_SEED to change it), TIDEGATE_SCHEMATHESIS_EXAMPLES examples per
#   operation and phase (default 100), under a hard timeout (TIDEGATE_SCHEMATHESIS_TIMEOUT,
#   default 90 s), and stops the server on exit. The checks left out of single operations are
#   listed with why in the configuration below; nothing else is left out.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

ST_VERSION=4.32.5
seed="${TIDEGATE_SCHEMATHESIS_SEED:-20261207}"
examples="${TIDEGATE_SCHEMATHESIS_EXAMPLES:-100}"
hard_timeout="${TIDEGATE_SCHEMATHESIS_TIMEOUT:-90}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tidegate/target}"

log() { printf '== schemathesis: %s\n' "$*" >&2; }
fail() { log "$*"; exit 1; }

command -v python3 >/dev/null 2>&1 || fail "python3 not found: install it and run again"

venv="$HOME/.cache/tidegate/schemathesis-$ST_VERSION"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$ST_VERSION"; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >/dev/null 2>&1; then
    rm -rf "$venv"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      log "installing python3-venv"
      apt-get update -qq >/dev/null
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
      python3 -m venv "$venv" || fail "python3 -m venv failed"
    else
      fail "python3 cannot create a virtual environment: install python3-venv and run again"
    fi
  fi
  log "installing schemathesis $ST_VERSION from PyPI"
  started=$SECONDS
  pip_log="$(mktemp)"
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION" >"$pip_log" 2>&1; then
    cat "$pip_log" >&2; rm -f "$pip_log"
    fail "pip install schemathesis==$ST_VERSION failed"
  fi
  rm -f "$pip_log"
  "$venv/bin/schemathesis" --version >/dev/null || fail "schemathesis installed but does not run"
  log "schemathesis installed in $((SECONDS - started)) s"
fi

if [ -n "${TIDEGATE_BIN:-}" ]; then
  bin="$TIDEGATE_BIN"
else
  log "building tidegate"
  cargo build --locked --bin tidegate
  bin="$CARGO_TARGET_DIR/debug/tidegate"
fi
[ -x "$bin" ] || fail "no tidegate binary at $bin"

data="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$data"
}
trap cleanup EXIT

# Plain HTTP on loopback (--plain-http): the API's answers are what is checked here; TLS and the
# agent routes' certificates have tests of their own.
"$bin" up --plain-http --data-dir "$data" --listen 127.0.0.1:0 --fleet "$root/examples/fleet" \
  --agent-zone edge-clinic --time-scale 3600 >"$data/up.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
  [ -s "$data/server.url" ] && [ -s "$data/admin.token" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$data/up.log" >&2; fail "tidegate up exited"; }
  sleep 0.2
done
[ -s "$data/server.url" ] || { cat "$data/up.log" >&2; fail "tidegate up did not start within 60 s"; }
url="$(cat "$data/server.url")"
url="${url%/}"
token="$(tr -d '\n' <"$data/admin.token")"
log "control plane at $url"

# One job and one artifact: the operations on a job or an artifact use them.
"$venv/bin/python" - "$url" "$token" "$root/examples/jobs/sepsis-hpo-sweep.yaml" >"$data/ids" <<'PY'
import json, sys, urllib.request
url, token, manifest = sys.argv[1], sys.argv[2], open(sys.argv[3]).read()
def post(path, body, ctype):
    req = urllib.request.Request(url + path, data=body, method="POST", headers={
        "Authorization": "Bearer " + token, "Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)
job = post("/v1/jobs", json.dumps({"manifest": manifest}).encode(), "application/json")["job"]["id"]
art = post("/v1/artifacts?kind=model-card&name=schemathesis&team=icu-ml&classification=internal",
           b"a model card", "application/octet-stream")["digest"]
print(job)
print(art)
PY
TIDEGATE_ST_JOB="$(sed -n 1p "$data/ids")"
TIDEGATE_ST_DIGEST="$(sed -n 2p "$data/ids")"
export TIDEGATE_ST_JOB TIDEGATE_ST_DIGEST

# The checks, and the operations each is left out of, with why (the rest run every check). A
# check left out of an operation is one whose refusals depend on state or on the fleet in force,
# which no JSON Schema can state; the other checks still run there.
cat >"$data/schemathesis.toml" <<'TOML'
[checks]
enabled = false
not_a_server_error.enabled = true
status_code_conformance.enabled = true
response_schema_conformance.enabled = true
positive_data_acceptance.enabled = true
negative_data_rejection.enabled = true

[parameters]
"path.id" = "${TIDEGATE_ST_JOB}"
"path.digest" = "${TIDEGATE_ST_DIGEST}"

# A manifest is YAML checked against the fleet in force (zones, datasets, teams): no JSON Schema
# says which strings are valid jobs, so a schema-valid body is rightly refused (400).
[[operations]]
include-name = "POST /v1/jobs"
checks.positive_data_acceptance.enabled = false

# `dir` names a fleet directory on the control plane's host; any other string is rightly
# refused (422).
[[operations]]
include-name = "POST /v1/fleet"
checks.positive_data_acceptance.enabled = false

# `minutes` may not outlive the calling token (400 past its remaining lifetime, which is known
# only at the call).
[[operations]]
include-name = "POST /v1/tokens"
checks.positive_data_acceptance.enabled = false

# A job token's zone must be one of the fleet in force, each input data that may be held there
# (403 otherwise), and it may not outlive the calling token.
[[operations]]
include-name = "POST /v1/tokens/job"
checks.positive_data_acceptance.enabled = false

# A revocation is real: one that revoked the admin token's root key would refuse every later
# call of the run. Its refusals are covered by crates/server/tests (auth.rs, openapi.rs).
[[operations]]
include-name = "POST /v1/tokens/revoke"
enabled = false

# The promotion gates refuse a stage the recorded evidence does not support (422, naming it).
[[operations]]
include-name = "POST /v1/artifacts/{digest}/promote"
checks.positive_data_acceptance.enabled = false

# `classification` names levels and tags of the fleet in force, and `job` a job of the team.
[[operations]]
include-name = "POST /v1/artifacts"
checks.positive_data_acceptance.enabled = false

# An `exited` report needs its exit code, and a run id is at most 80 bytes (JSON Schema counts
# characters): conditions this document does not state.
[[operations]]
include-name = "POST /v1/agents/{zone}/sync"
checks.positive_data_acceptance.enabled = false
TOML

log "running schemathesis (seed $seed, $examples examples per operation, at most $hard_timeout s)"
status=0
(
  cd "$data"
  timeout --kill-after=10 "$hard_timeout" "$venv/bin/schemathesis" --config-file "$data/schemathesis.toml" \
    --no-color run "$url/openapi.json" \
    --header "Authorization: Bearer $token" \
    --max-examples "$examples" --seed "$seed" --workers 1 \
    --phases examples,coverage,fuzzing --generation-database none \
    --request-timeout 30 --output-sanitize true
) || status=$?
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
  log "FAILED: schemathesis did not finish within $hard_timeout s"
elif [ "$status" != 0 ]; then
  log "FAILED: schemathesis found failures (exit $status; output above)"
fi
if ! kill -0 "$pid" 2>/dev/null; then
  cat "$data/up.log" >&2
  log "FAILED: the control plane exited during the run"
  status=1
fi
exit "$status"
