# Shared by scripts/run, scripts/test and scripts/i18n: create .venv if missing and install the
# project with the given extras, skipping pip when nothing changed since last time.
#
# Each install leaves a stamp `.venv/.installed-<hash of pyproject.toml>-<extras>`. Stamps of
# other extras with the same hash are kept, so scripts/run and scripts/test do not undo each
# other; a stamp for the `dev` extra (which includes server and agent) satisfies any request.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1; then PY="$cand"; break; fi
  done
fi
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $PY" >&2
  "$PY" -m venv .venv
fi
ensure_installed() {
  local extras="$1"
  local hash
  hash="$(sha256sum pyproject.toml | cut -c1-16)"
  local stamp=".venv/.installed-${hash}-${extras//,/-}"
  if [ -f "$stamp" ] || [ -f ".venv/.installed-${hash}-dev" ]; then
    return 0
  fi
  echo "installing release-server[$extras] into .venv" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"
  # Stamps of an older pyproject.toml are stale; those of the same one (other extras) stay.
  local old
  for old in .venv/.installed-*; do
    case "$old" in
      ".venv/.installed-${hash}-"*) ;;
      *) rm -f "$old" ;;
    esac
  done
  touch "$stamp"
}
