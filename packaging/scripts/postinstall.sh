#!/bin/sh
# berth package, after its files are in place.
#   dpkg postinst: configure <old-version, empty on a first install> | abort-*
#   rpm %post:     1 (install) | 2 or more (upgrade)
# Reloads systemd. Never enables or starts berth; on an upgrade it restarts
# berth only if it was running (try-restart), so the new binary runs.
set -e

upgrade=""
case "$1" in
  configure) [ -z "$2" ] || upgrade=1 ;;
  [0-9]*) [ "$1" -lt 2 ] || upgrade=1 ;;
esac

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
  if [ -n "$upgrade" ]; then
    systemctl try-restart berth.service >/dev/null 2>&1 || true
  fi
fi

case "$1" in
  configure | 1)
    if [ -z "$upgrade" ]; then
      echo "berth is installed but not enabled. Edit /etc/berth/berth.yaml, then: systemctl enable --now berth.service"
    fi
    ;;
esac
exit 0
