#!/bin/sh
# berth package, after its files are removed.
#   dpkg postrm: remove | purge | upgrade | disappear | failed-upgrade | abort-*
#   rpm %postun: 0 (erase) | 1 (upgrade)
# On dpkg purge and rpm erase: deletes berth's state (/var/lib/berth, its
# checkpoints) and the berth user and group. A plain dpkg remove keeps them,
# as it keeps /etc/berth/berth.yaml (group berth). The docker group is never
# deleted: Docker owns it.
set -e

case "$1" in
  purge | 0)
    rm -rf /var/lib/berth
    # What is left in /etc/berth (your own files, rpm's berth.yaml.rpmsave)
    # must not keep a group ID that a future group could get.
    if [ -d /etc/berth ] && getent group berth >/dev/null 2>&1; then
      find /etc/berth -group berth -exec chgrp root {} + 2>/dev/null || true
    fi
    if getent passwd berth >/dev/null 2>&1; then
      userdel berth || echo "berth: could not delete the berth user (is a berth process still running?)" >&2
    fi
    # userdel may have deleted the group already (USERGROUPS_ENAB).
    if getent group berth >/dev/null 2>&1; then
      groupdel berth || echo "berth: could not delete the berth group" >&2
    fi
    ;;
esac

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
