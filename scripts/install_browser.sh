#!/usr/bin/env bash
# Installs headless Chromium (Debian packages chromium + chromium-driver) for the test that
# renders `dvc plots show` offline. Idempotent: does nothing when chromium is already there.
#   bash scripts/install_browser.sh
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install_browser.sh: needs root or sudo to apt-get install chromium" >&2
    exit 1
  fi
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends chromium chromium-driver
echo "chromium installed: $(chromium --version)"
