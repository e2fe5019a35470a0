#!/usr/bin/env bash
# The web page test (tests/test_webpage.py) drives a real headless browser: Chromium and its
# driver from the distribution. Does nothing when both are there; installs them with apt-get
# where it can; otherwise says what to install and fails.
set -euo pipefail
if command -v chromedriver > /dev/null && { command -v chromium || command -v chromium-browser || command -v google-chrome; } > /dev/null; then
  exit 0
fi
if command -v apt-get > /dev/null && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver > /dev/null
  exit 0
fi
echo "install Chromium and chromedriver for the web page test (Debian/Ubuntu: sudo apt-get install chromium chromium-driver; macOS: brew install --cask chromium chromedriver)" >&2
exit 1
