#!/usr/bin/env bash
# Installs Debian's Chromium for the browser test (server/browser_test.go) when it is
# missing. Idempotent; needs root (or sudo) and the Debian package mirrors.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
chromium --version
