#!/usr/bin/env bash
# System packages the tests need beyond Python: Debian's Chromium (driven headless by Playwright in
# tests/test_serve_browser.py) and fonts for its pages, and a Java runtime for the coco-caption PTB
# tokenizer and METEOR (tests/test_eval.py). Run as root; idempotent: installs only what is missing.
set -euo pipefail

packages=(chromium fonts-liberation fonts-dejavu-core)
command -v java >/dev/null 2>&1 || packages+=(default-jre-headless)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "ci-system-deps: already installed: ${packages[*]}"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "ci-system-deps: run as root to install: ${missing[*]}" >&2
    exit 1
fi

echo "ci-system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
test -x /usr/bin/chromium
echo "ci-system-deps: done ($(/usr/bin/chromium --version 2>/dev/null | head -n 1))"
