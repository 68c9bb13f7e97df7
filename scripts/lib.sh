# Shared set-up for berth's scripts: find or install Go, and make sure a
# Docker daemon answers. Sourced, not run.

log() { printf '==> %s\n' "$*" >&2; }

# ensure_go puts a Go toolchain on PATH: the one on PATH, /usr/local/go, or
# Debian's golang-go (which then fetches the toolchain go.mod asks for
# through the Go module proxy).
ensure_go() {
  if ! command -v go >/dev/null 2>&1; then
    if [ -x /usr/local/go/bin/go ]; then
      export PATH="/usr/local/go/bin:$PATH"
    else
      log "installing Go (golang-go)"
      apt_install golang-go
    fi
  fi
  export PATH="$(go env GOPATH)/bin:$PATH"
  export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
  # Go 1.21 and later fetch the toolchain go.mod asks for; older ones
  # (Debian 12's golang-go is 1.19) cannot build berth.
  local minor
  minor="$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')"
  if [ -n "$minor" ] && [ "$minor" -lt 21 ]; then
    log "$(go env GOVERSION) cannot fetch the Go version go.mod asks for; install Go 1.21 or later from https://go.dev/dl/ into /usr/local/go and run again"
    return 1
  fi
}

# ensure_cgo makes sure a C compiler is there: the race detector (make test)
# needs cgo; building and running berth do not.
ensure_cgo() {
  if ! command -v gcc >/dev/null 2>&1; then
    log "installing gcc (the race detector needs cgo)"
    apt_install gcc libc6-dev
  fi
}

apt_updated=""
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    log "need root to apt-get install $*; install them and run again"
    return 1
  fi
  if [ -z "$apt_updated" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

docker_answers() {
  local sock="${DOCKER_HOST:-unix:///var/run/docker.sock}"
  sock="${sock#unix://}"
  [ -S "$sock" ] && curl -fsS --max-time 5 --unix-socket "$sock" http://docker/_ping >/dev/null 2>&1
}

# ensure_docker makes sure a Docker daemon answers on DOCKER_HOST or the
# local socket. If none does and we are root, it starts dockerd (installing
# docker.io if needed) and waits for it; it fails, never skips, when the
# daemon still does not answer.
ensure_docker() {
  command -v curl >/dev/null 2>&1 || apt_install curl
  if docker_answers; then
    if docker_wedged; then
      start_private_dockerd
      return
    fi
    return 0
  fi
  if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST#unix://}" = "$DOCKER_HOST" ]; then
    log "the Docker daemon at DOCKER_HOST=$DOCKER_HOST does not answer"
    return 1
  fi
  if [ "$(id -u)" != 0 ]; then
    log "no Docker daemon answers at /var/run/docker.sock; start it (sudo systemctl start docker) and run again"
    return 1
  fi
  command -v dockerd >/dev/null 2>&1 || { log "installing docker.io"; apt_install docker.io; }
  log "no Docker daemon answers: starting dockerd (log: /tmp/berth-dockerd.log)"
  nohup dockerd >/tmp/berth-dockerd.log 2>&1 &
  for _ in $(seq 1 60); do
    if docker_answers; then
      log "dockerd answers"
      return 0
    fi
    sleep 1
  done
  log "dockerd did not answer within 60s; its log:"
  tail -n 30 /tmp/berth-dockerd.log >&2 || true
  return 1
}

# docker_wedged tells a daemon that answers a ping but no longer serves
# anything that takes its network controller's lock: Docker 20.10's
# libnetwork can deadlock when many containers exit at once (seen here: after
# hundreds of containers stopped together, every container start, stop,
# remove and GET /networks hung for good while /_ping and GET /containers/json
# still answered). Such a daemon would hang the e2e suite, so it is reported
# and a private daemon is used instead.
docker_wedged() {
  local sock="${DOCKER_HOST:-unix:///var/run/docker.sock}"
  sock="${sock#unix://}"
  ! curl -fsS --max-time 20 --unix-socket "$sock" http://docker/networks >/dev/null 2>&1
}

# start_private_dockerd starts a dockerd of this run's own (own data and exec
# roots, socket, pidfile; no bridge, no iptables), exports DOCKER_HOST to it
# and stops it, by its PID, when the calling script exits. The wedged daemon
# is left as it is: it is the system's, not ours to stop.
start_private_dockerd() {
  if [ "$(id -u)" != 0 ]; then
    log "the Docker daemon at ${DOCKER_HOST:-unix:///var/run/docker.sock} answers pings but not GET /networks within 20s (wedged); restart it and run again"
    return 1
  fi
  local dir driver wedged="${DOCKER_HOST:-unix:///var/run/docker.sock}"
  dir=$(mktemp -d /tmp/berth-private-dockerd.XXXXXX)
  private_dockerd_dir=$dir
  trap stop_private_dockerd EXIT
  # The wedged daemon's storage driver, if it still says (it may not): the
  # private one uses the same; else dockerd picks its default.
  driver=$(curl -fsS --max-time 5 --unix-socket "${wedged#unix://}" http://docker/info 2>/dev/null |
    sed -n 's/.*"Driver":"\([^"]*\)".*/\1/p') || driver=
  log "the Docker daemon at ${DOCKER_HOST:-unix:///var/run/docker.sock} answers pings but not GET /networks within 20s: it is wedged (Docker 20.10's network controller can deadlock when many containers exit at once). Using a private dockerd in $dir instead (log: $dir/dockerd.log)"
  mkdir -p "$dir/data" "$dir/exec"
  echo '{}' >"$dir/daemon.json" # not the system's /etc/docker/daemon.json
  nohup dockerd --config-file "$dir/daemon.json" --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/docker.pid" \
    -H "unix://$dir/docker.sock" --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
    ${driver:+--storage-driver "$driver"} --log-opt max-size=10m --log-opt max-file=3 \
    >"$dir/dockerd.log" 2>&1 &
  private_dockerd_pid=$!
  export DOCKER_HOST="unix://$dir/docker.sock"
  for _ in $(seq 1 60); do
    if docker_answers; then
      log "the private dockerd answers at $DOCKER_HOST"
      return 0
    fi
    kill -0 "$private_dockerd_pid" 2>/dev/null || break
    sleep 1
  done
  log "the private dockerd did not answer (within 60s, or it exited); its log:"
  tail -n 30 "$dir/dockerd.log" >&2 || true
  return 1
}

# stop_private_dockerd stops the dockerd start_private_dockerd started (its
# containers first, then the daemon by PID) and removes its directory.
stop_private_dockerd() {
  [ -n "${private_dockerd_dir:-}" ] || return 0
  if [ -z "${private_dockerd_pid:-}" ]; then
    rm -rf "$private_dockerd_dir"
    private_dockerd_dir=
    return 0
  fi
  local ids
  ids=$(docker ps -aq 2>/dev/null || true)
  [ -z "$ids" ] || docker rm -f $ids >/dev/null 2>&1 || true
  kill -TERM "$private_dockerd_pid" 2>/dev/null || true
  for _ in $(seq 1 30); do
    kill -0 "$private_dockerd_pid" 2>/dev/null || break
    sleep 1
  done
  kill -KILL "$private_dockerd_pid" 2>/dev/null || true
  umount -R "$private_dockerd_dir/data" "$private_dockerd_dir/exec" 2>/dev/null || true
  rm -rf "$private_dockerd_dir" 2>/dev/null || true
  private_dockerd_pid= private_dockerd_dir=
}

# ensure_busybox makes sure the quick-start test (e2e/quickstart_test.go) can
# run the busybox image the README's quick start uses: the daemon has it, or
# this machine has a static busybox to build it from (no registry needed).
ensure_busybox() {
  local sock="${DOCKER_HOST:-unix:///var/run/docker.sock}"
  sock="${sock#unix://}"
  if curl -fsS --max-time 5 --unix-socket "$sock" http://docker/images/busybox/json >/dev/null 2>&1; then
    return 0
  fi
  [ -x /bin/busybox ] && ! file /bin/busybox 2>/dev/null | grep -q dynamically && return 0
  log "installing busybox-static (the quick-start test builds its busybox image from it)"
  apt_install busybox-static
}
