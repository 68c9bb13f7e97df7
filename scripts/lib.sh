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
