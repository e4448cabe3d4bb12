#!/usr/bin/env bash
# ensure-debian-package.sh COMMAND PACKAGE [PATH...]
# Make sure a program the tests drive exists (mosquitto: the private test
# brokers; chromium: the web UI tests, driven by Playwright — never a
# downloaded browser). Installs Debian's package when run as root with apt;
# otherwise stops with the one command to run.
set -eu
cmd=$1; pkg=$2; shift 2
for b in "$cmd" "$@"; do
  if command -v "$b" >/dev/null 2>&1; then exit 0; fi
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's $pkg package for the tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "$pkg" >/dev/null
  exit 0
fi
echo "$cmd is missing: install it (Debian/Ubuntu: sudo apt-get install $pkg) and run make again" >&2
exit 1
