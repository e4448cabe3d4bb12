#!/usr/bin/env bash
# Make sure a mosquitto broker binary exists: the test harness starts private brokers with it.
set -eu
for b in mosquitto /usr/sbin/mosquitto /usr/local/sbin/mosquitto; do
  if command -v "$b" >/dev/null 2>&1; then exit 0; fi
done
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's mosquitto package for the test broker"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
  exit 0
fi
echo "mosquitto is missing: install it (Debian/Ubuntu: sudo apt-get install mosquitto) and run make test again" >&2
exit 1
