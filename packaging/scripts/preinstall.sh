#!/bin/sh
# berth package, before its files are unpacked.
#   dpkg preinst: install | upgrade <old-version> | abort-upgrade
#   rpm %pre:     1 (install) | 2 (upgrade)
# Creates the berth system user and group and puts berth in the docker group,
# creating that group (as a system group, as Docker's packages do) when Docker
# is not installed yet. Idempotent; enables and starts nothing.
set -e

nologin=/usr/sbin/nologin
[ -x "$nologin" ] || nologin=/sbin/nologin
[ -x "$nologin" ] || nologin=/bin/false

getent group docker >/dev/null 2>&1 || groupadd --system docker
getent group berth >/dev/null 2>&1 || groupadd --system berth

if ! getent passwd berth >/dev/null 2>&1; then
  useradd --system --gid berth --groups docker \
    --home-dir /var/lib/berth --no-create-home --shell "$nologin" \
    --comment "berth Docker log collector" berth
else
  # The user exists (an upgrade, or created by hand): make sure it can read
  # the Docker socket.
  case " $(id -nG berth) " in
    *" docker "*) ;;
    *) usermod --append --groups docker berth ;;
  esac
fi
exit 0
