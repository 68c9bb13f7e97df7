#!/usr/bin/env bash
# Runs every test of berth: unit tests with the race detector, then the e2e
# suite against the real Docker daemon (started if none answers), the
# 6-minute soak (e2e/soak_test.go, docs/soak.md) included.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_go
log "go vet"
go vet ./...
log "unit tests (-race)"
go test -race -count=1 ./...
ensure_docker
log "e2e tests against the Docker daemon (-race)"
log_file="${TMPDIR:-/tmp}/berth-e2e.log"
set +e
BERTH_E2E=1 go test -race -count=1 -tags e2e -timeout 40m -v ./e2e/... >"$log_file" 2>&1
rc=$?
set -e
# The full log is long; show each test's verdict and the figures it measured.
grep -E '^(\s*--- |ok |FAIL|PASS$|panic:)|figure:' "$log_file" || true
[ "$rc" -eq 0 ] || { log "e2e failed (full log: $log_file); its last lines:"; tail -n 40 "$log_file"; }
exit "$rc"
