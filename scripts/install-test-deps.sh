#!/usr/bin/env bash
# Everything the test suite needs on a fresh machine (Python 3.11, Debian):
#   the pinned Python packages, and Debian's Chromium for the real-browser test.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q -r requirements-test.txt
if ! command -v chromium >/dev/null 2>&1 && ! [ -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install Debian's chromium; the browser test will skip and say so" >&2
  else
    echo "warning: no apt-get here; install Chromium yourself for the browser test (it skips otherwise)" >&2
  fi
fi
