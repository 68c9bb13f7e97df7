#!/usr/bin/env bash
# Smoke test of the packaged berth, after scripts/release.sh. Runs as root on a
# Docker host with dpkg (a CI machine: it installs and purges the berth
# package).
#
#  1. dpkg -i dist/*amd64.deb (apt-get install -f if dependencies are missing)
#     and check what it installed: binary, stamped version, conffile, unit,
#     the berth system user in the docker group, nothing enabled.
#  2. systemd-analyze verify on the installed unit, when the tool exists:
#     only complaints about berth.service fail the test.
#  3. Reinstall over an edited /etc/berth/berth.yaml: the edit is kept.
#  4. Run the packaged /usr/bin/berth directly (no systemd PID 1 in CI) with a
#     temporary config against the local daemon, start a FROM-scratch test
#     container that prints a unique marker, wait (polling, with a deadline)
#     for the marker in berth's stdout, SIGTERM berth and expect exit 0.
#  5. dpkg --purge berth: the berth user, the binary, the config, the unit
#     and the state are gone.
#
# On exit, whatever happened, it removes only what it started or made: its
# berth process (by PID), its container and image, its temp dir, and the
# package if it installed it.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }
die() { printf '\nrelease-smoke: FAILED: %s\n' "$*" >&2; exit 1; }

# The packaged berth runs under systemd with none of this shell's BERTH_*
# or OTEL_* settings (a test run's BERTH_E2E, say, which berth would reject
# as an unknown setting): every berth below runs without them.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep -E '^(BERTH_|OTEL_)' || true)
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
start=$(now)

UNIT=/lib/systemd/system/berth.service
CONF=/etc/berth/berth.yaml
READY_DEADLINE=30   # seconds for berth's /readyz to answer 200
MARKER_DEADLINE=60  # seconds for the marker to reach berth's stdout
STOP_DEADLINE=20    # seconds for berth to exit after SIGTERM (the unit's TimeoutStopSec)

# ---- preconditions -----------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root: it installs and purges the berth package"
for tool in dpkg dpkg-deb docker curl getent; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done
if ! command -v go >/dev/null 2>&1; then
  [ -x /usr/local/go/bin/go ] || die "go not found (it builds the test container's program)"
  export PATH="/usr/local/go/bin:$PATH"
fi
shopt -s nullglob
debs=(dist/*amd64.deb)
shopt -u nullglob
[ "${#debs[@]}" = 1 ] || die "want exactly one dist/*amd64.deb, found ${#debs[@]}: run scripts/release.sh first"
deb=${debs[0]}
docker info >/dev/null 2>&1 || die "the Docker daemon does not answer (docker info)"
# dpkg's state of the berth package: installed, config-files, half-installed,
# ...; empty or not-installed when dpkg knows nothing of it.
pkg_state() { dpkg-query -W -f='${db:Status-Status}' berth 2>/dev/null || true; }
pkg_present() { case "$(pkg_state)" in "" | not-installed) return 1 ;; esac; }
if pkg_present; then
  die "a berth package is already on this machine ($(pkg_state)); this test installs and purges it: dpkg --purge berth first"
fi
if getent passwd berth >/dev/null; then
  die "a berth user exists without the package; this test checks that purge deletes it: userdel berth first"
fi

# ---- cleanup -----------------------------------------------------------------
tmp=$(mktemp -d /tmp/berth-release-smoke.XXXXXX)
berth_pid=""
container=""
image=""
installed=""
cleanup() {
  local rc=$?
  set +e
  if [ -n "$berth_pid" ] && kill -0 "$berth_pid" 2>/dev/null; then
    kill -KILL "$berth_pid" 2>/dev/null
    wait "$berth_pid" 2>/dev/null
  fi
  [ -n "$container" ] && docker rm -f "$container" >/dev/null 2>&1
  [ -n "$image" ] && docker rmi -f "$image" >/dev/null 2>&1
  if [ -n "$installed" ] && pkg_present; then
    dpkg --purge berth >/dev/null 2>&1
  fi
  if [ "$rc" != 0 ] && [ -d "$tmp" ]; then
    for f in "$tmp"/berth.stderr "$tmp"/berth.stdout; do
      [ -s "$f" ] || continue
      printf -- '--- last lines of %s ---\n' "$(basename "$f")" >&2
      tail -n 20 "$f" >&2
    done
  fi
  rm -rf "$tmp"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- 1. install --------------------------------------------------------------
pkg_version=$(dpkg-deb -f "$deb" Version)
log "installing $deb (version $pkg_version)"
installed=1
if ! dpkg -i "$deb" </dev/null >"$tmp/dpkg.log" 2>&1; then
  log "dpkg -i left dependencies unmet; apt-get install -f"
  DEBIAN_FRONTEND=noninteractive apt-get install -f -y -qq >>"$tmp/dpkg.log" 2>&1 ||
    { cat "$tmp/dpkg.log" >&2; die "dpkg -i $deb failed and apt-get install -f could not fix it"; }
fi
sed 's/^/    /' "$tmp/dpkg.log" >&2
[ "$(pkg_state)" = installed ] || die "berth is not fully installed: $(pkg_state)"

[ -x /usr/bin/berth ] || die "/usr/bin/berth is missing or not executable"
version_out=$(/usr/bin/berth version) || die "/usr/bin/berth version failed"
case "$version_out" in
  *" dev "* | *"commit none"* | *"built unknown"*) die "berth version is not stamped: $version_out" ;;
esac
log "$version_out"

[ -f "$CONF" ] || die "$CONF is missing"
dpkg-query -W -f='${Conffiles}\n' berth | grep -q "^ $CONF " || die "$CONF is not a conffile of the package"
conf_stat=$(stat -c '%U:%G %a' "$CONF")
[ "$conf_stat" = "root:berth 640" ] || die "$CONF is $conf_stat, want root:berth 640"
[ -f "$UNIT" ] || die "$UNIT is missing"

getent passwd berth >/dev/null || die "the package did not create the berth user"
berth_uid=$(id -u berth)
[ "$berth_uid" -lt 1000 ] || die "berth is not a system user (uid $berth_uid)"
case " $(id -nG berth) " in
  *" docker "*) ;;
  *) die "berth is not in the docker group: $(id -nG berth)" ;;
esac
log "user: $(id berth), shell $(getent passwd berth | cut -d: -f7)"

shopt -s nullglob
enabled=(/etc/systemd/system/*.wants/berth.service)
shopt -u nullglob
[ "${#enabled[@]}" = 0 ] || die "the package enabled berth.service: ${enabled[*]}"

# The service user can read the config and, when the socket is the docker
# group's, reach the daemon.
setpriv --reuid=berth --regid=berth --init-groups /usr/bin/berth check-config --config "$CONF" >/dev/null ||
  die "berth check-config --config $CONF fails as the berth user"
sock=/var/run/docker.sock
if [ -S "$sock" ] && [ "$(stat -c %G "$sock")" = docker ]; then
  setpriv --reuid=berth --regid=berth --init-groups \
    curl -fsS --max-time 5 --unix-socket "$sock" http://docker/_ping >/dev/null ||
    die "the berth user cannot reach $sock through the docker group"
  log "the berth user reads $CONF and reaches $sock"
else
  log "the berth user reads $CONF ($sock is not group docker here: socket access not checked)"
fi

# ---- 2. systemd-analyze verify -------------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
  verify_rc=0
  systemd-analyze verify "$UNIT" >"$tmp/verify.log" 2>&1 || verify_rc=$?
  if grep -i 'berth' "$tmp/verify.log" >"$tmp/verify-berth.log"; then
    sed 's/^/    /' "$tmp/verify.log" >&2
    die "systemd-analyze verify $UNIT reports problems with berth.service (exit $verify_rc)"
  fi
  if [ "$verify_rc" != 0 ]; then
    log "systemd-analyze verify exited $verify_rc about other units only (ignored):"
    sed 's/^/    /' "$tmp/verify.log" >&2
  fi
  log "systemd-analyze verify $UNIT: clean"
  if out=$(systemd-analyze security --offline=yes "$UNIT" 2>/dev/null | tail -n 1); then
    log "systemd-analyze security: ${out#→ }"
  fi
else
  log "systemd-analyze not found: unit not verified"
fi

# ---- 3. an upgrade keeps the edited config ---------------------------------------
edit="# edited by release-smoke $$"
echo "$edit" >>"$CONF"
dpkg -i "$deb" </dev/null >"$tmp/dpkg-reinstall.log" 2>&1 ||
  { cat "$tmp/dpkg-reinstall.log" >&2; die "reinstalling $deb over itself failed"; }
grep -qxF "$edit" "$CONF" || die "reinstalling the package replaced the edited $CONF"
[ "$(id -u berth)" = "$berth_uid" ] || die "reinstalling changed the berth user's uid"
log "reinstall over an edited $CONF kept the edit"

# ---- 4. run the packaged berth against the local daemon --------------------------
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=""
for _ in $(seq 1 50); do
  p=$((20000 + RANDOM % 40000))
  if port_free "$p"; then port=$p; break; fi
done
[ -n "$port" ] || die "no free 127.0.0.1 port found"

cat >"$tmp/berth.yaml" <<EOF
http_addr: 127.0.0.1:$port
state_dir: $tmp/state
initial_position: beginning
log_level: debug
EOF
mkdir -p "$tmp/state"
/usr/bin/berth check-config --config "$tmp/berth.yaml" >/dev/null || die "the smoke test's config is invalid"

# The packaged default: no OTLP endpoint, so records go to stdout.
log "starting /usr/bin/berth (http_addr 127.0.0.1:$port)"
/usr/bin/berth --config "$tmp/berth.yaml" >"$tmp/berth.stdout" 2>"$tmp/berth.stderr" &
berth_pid=$!

alive() { [ -e "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

deadline=$((SECONDS + READY_DEADLINE))
until curl -fsS --max-time 2 "http://127.0.0.1:$port/readyz" >/dev/null 2>&1; do
  alive "$berth_pid" || die "berth exited before it was ready"
  [ "$SECONDS" -lt "$deadline" ] || die "berth's /readyz did not answer 200 within ${READY_DEADLINE}s"
  sleep 0.2
done
curl -fsS --max-time 2 "http://127.0.0.1:$port/healthz" >/dev/null || die "/healthz does not answer 200"
log "berth is ready (pid $berth_pid)"

marker="berth-release-smoke-$(date +%s%N)-$$-$RANDOM"
name="berth-release-smoke-$$"
mkdir -p "$tmp/image"
cat >"$tmp/image/main.go" <<'EOF'
// Prints its argument as one line on stdout, then waits to be stopped.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	fmt.Println(os.Args[1])
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
EOF
printf 'FROM scratch\nCOPY marker /marker\nENTRYPOINT ["/marker"]\n' >"$tmp/image/Dockerfile"
(cd "$tmp/image" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local \
  go build -trimpath -ldflags='-s -w' -o marker main.go) || die "cannot build the test program"
image="berth-release-smoke:$$"
DOCKER_BUILDKIT=0 docker build -q --label berth.release-smoke=1 -t "$image" "$tmp/image" >"$tmp/build.log" 2>&1 ||
  { cat "$tmp/build.log" >&2; die "docker build of the test image failed"; }

container=$(docker run -d --name "$name" --network none --label berth.release-smoke=1 "$image" "$marker") ||
  die "docker run of the test container failed"
log "test container $name (${container:0:12}) prints $marker"

deadline=$((SECONDS + MARKER_DEADLINE))
until grep -qF "$marker" "$tmp/berth.stdout"; do
  alive "$berth_pid" || die "berth exited before the marker arrived"
  [ "$SECONDS" -lt "$deadline" ] || die "the marker did not reach berth's stdout within ${MARKER_DEADLINE}s"
  sleep 0.2
done
record=$(grep -F "$marker" "$tmp/berth.stdout" | head -n 1)
if command -v jq >/dev/null 2>&1; then
  echo "$record" | jq -e --arg m "$marker" --arg n "$name" --arg id "$container" '
    .body == $m and .attributes["log.iostream"] == "stdout" and
    .resource["container.name"] == $n and .resource["container.id"] == $id' >/dev/null ||
    die "berth's record of the marker is not as expected: $record"
fi
log "berth's record: $record"

log "stopping berth with SIGTERM"
kill -TERM "$berth_pid"
deadline=$((SECONDS + STOP_DEADLINE))
while alive "$berth_pid"; do
  [ "$SECONDS" -lt "$deadline" ] || die "berth did not exit within ${STOP_DEADLINE}s of SIGTERM"
  sleep 0.1
done
berth_rc=0
wait "$berth_pid" || berth_rc=$?
berth_pid=""
[ "$berth_rc" = 0 ] || die "berth exited $berth_rc after SIGTERM, want 0"
# Other containers on a shared host may give berth reasons to warn: shown,
# not failed on.
if grep -E 'level=(ERROR|WARN)' "$tmp/berth.stderr" >"$tmp/berth.warnings"; then
  log "berth logged $(wc -l <"$tmp/berth.warnings") warning/error line(s); the first:"
  head -n 5 "$tmp/berth.warnings" | sed 's/^/    /' >&2
fi
log "berth exited 0 ($(wc -l <"$tmp/berth.stdout") records on stdout)"

docker rm -f "$container" >/dev/null || die "cannot remove the test container"
container=""
docker rmi -f "$image" >/dev/null || die "cannot remove the test image"
image=""

# ---- 5. purge ------------------------------------------------------------------
log "dpkg --purge berth"
dpkg --purge berth >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log" >&2; die "dpkg --purge berth failed"; }
installed=""
sed 's/^/    /' "$tmp/purge.log" >&2
! pkg_present || die "dpkg still knows berth after purge: $(pkg_state)"
! getent passwd berth >/dev/null || die "the berth user is still there after purge"
! getent group berth >/dev/null || die "the berth group is still there after purge"
for f in /usr/bin/berth "$CONF" /etc/berth "$UNIT" /var/lib/berth; do
  [ ! -e "$f" ] || die "$f is still there after purge"
done
log "purged: no berth user or group, no /usr/bin/berth, $CONF, $UNIT or /var/lib/berth"

echo
echo "release-smoke: PASS in $(secs "$start" "$(now)")s"
echo "  package:   $deb ($pkg_version)"
echo "  binary:    $version_out"
echo "  record:    marker seen in berth's stdout from container $name"
echo "  shutdown:  SIGTERM -> exit 0"
echo "  purge:     user, binary, config, unit and state removed"
