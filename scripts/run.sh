#!/usr/bin/env bash
# Builds berth and runs it against the local Docker daemon. With no OTLP
# endpoint configured, container logs go to stdout as JSON lines; berth's own
# logs go to stderr. Extra arguments are passed to berth.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_go
mkdir -p bin
go build -trimpath -o bin/berth ./cmd/berth
exec ./bin/berth --state-dir "${BERTH_STATE_DIR:-$PWD/.berth-state}" "$@"
