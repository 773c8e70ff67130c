#!/usr/bin/env bash
# Install everything cropcore needs on a fresh machine; safe to run again (does nothing when up to date).
#  - Debian packages: PostgreSQL + PostGIS (embedded STAC API), Chromium (browser tests), when missing.
#  - .venv       : the application (streamlit, torch, odc-stac, ...) from requirements.txt
#  - .venv-stac  : the embedded STAC API server (stac-fastapi-pgstac), whose pins clash with streamlit's.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

need_apt=()
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ]; then need_apt+=(postgresql); fi
if ! ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; then need_apt+=(postgis); fi
if ! command -v chromium >/dev/null 2>&1 && [ -z "${CROPCORE_SKIP_APT:-}" ]; then need_apt+=(chromium); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "cropcore: installing Debian packages: ${need_apt[*]}"
    apt-get update -qq
    pkgs=("${need_apt[@]}")
    # the PostGIS build matching the installed (or about to be installed) PostgreSQL major version
    for i in "${!pkgs[@]}"; do
      if [ "${pkgs[$i]}" = postgis ]; then
        major=$(apt-cache depends postgresql 2>/dev/null | sed -n 's/.*Depends: postgresql-\([0-9]*\)$/\1/p' | head -n 1)
        pkgs[$i]="postgresql-${major:-15}-postgis-3"
      fi
    done
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  else
    echo "cropcore: missing system packages: ${need_apt[*]}" >&2
    echo "  install them as root, e.g.: sudo apt-get install postgresql postgis chromium" >&2
    exit 1
  fi
fi

make_venv() {  # $1 venv dir, $2 requirements file, $3 extra pip args
  local venv=$1 req=$2 stamp
  stamp="$venv/.requirements.sha256"
  if [ -f "$stamp" ] && sha256sum -c --status "$stamp" 2>/dev/null; then return 0; fi
  echo "cropcore: installing $req into $venv (first run takes a couple of minutes)"
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip 2>/dev/null
  "$venv/bin/python" -m pip install -q -r "$req" ${3:-}
  sha256sum "$req" pyproject.toml > "$stamp"
}
make_venv .venv-stac requirements-stac.txt
make_venv .venv requirements.txt
# the package itself, editable, without touching the pinned dependencies
if ! .venv/bin/python -m pip show -q cropcore >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
fi
