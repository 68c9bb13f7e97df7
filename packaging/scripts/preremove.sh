#!/bin/sh
# berth package, before its files are removed.
#   dpkg prerm: remove | upgrade <new-version> | deconfigure | failed-upgrade
#   rpm %preun: 0 (erase) | 1 (upgrade)
# On removal (not on upgrade) stops and disables berth.service.
set -e

case "$1" in
  remove | 0)
    if [ -d /run/systemd/system ]; then
      systemctl stop berth.service >/dev/null 2>&1 || true
    fi
    if command -v systemctl >/dev/null 2>&1; then
      systemctl --no-reload disable berth.service >/dev/null 2>&1 || true
    fi
    ;;
esac
exit 0
