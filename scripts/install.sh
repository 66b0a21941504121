#!/usr/bin/env bash
# Installs what a fresh machine lacks: ffmpeg/ffprobe, g++ (torch.compile's CPU backend, which
# the teacher stage uses) and, for tests, chromium from apt; then the Python packages.
# Usage: bash scripts/install.sh          (run the app)
#        bash scripts/install.sh --dev    (also the test tools and the browser the UI test drives)
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=()
command -v ffprobe >/dev/null 2>&1 || apt_packages+=(ffmpeg)
command -v g++ >/dev/null 2>&1 || apt_packages+=(g++)
[ "${1:-}" = "--dev" ] && { [ -x /usr/bin/chromium ] || apt_packages+=(chromium); }
if [ ${#apt_packages[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${apt_packages[@]}"
fi

requirements=requirements.txt
[ "${1:-}" = "--dev" ] && requirements=requirements-dev.txt
python -m pip install -q -r "$requirements"
