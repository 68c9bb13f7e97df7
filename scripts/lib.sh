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
