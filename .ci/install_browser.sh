#!/usr/bin/env bash
# Install what tests/test_viewer_browser.py needs, into the active Python environment:
# Debian's chromium (driven by Playwright, which never downloads a browser of its own), npm, Playwright,
# and solara's front-end files in solara's asset cache (from the npm registry; the page then loads offline).
# Needs the project installed with its viz extra first (pip install ".[viz]"). Run as root or with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo -n"; fi
packages=()
[ -x /usr/bin/chromium ] || packages+=(chromium)
command -v npm >/dev/null || packages+=(npm)
if [ ${#packages[@]} -gt 0 ]; then
  if ! { $sudo apt-get update -q && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}"; }; then
    echo "install_browser.sh: could not install ${packages[*]} (needs root or sudo); the browser test will be skipped" >&2
    exit 0
  fi
fi
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
python -m pip install -q "playwright>=1.44"
python .ci/solara_assets.py
