#!/usr/bin/env bash
# Runs every test of berth: unit tests with the race detector, a few seconds
# of fuzzing for each fuzz target, then the e2e suite against the real Docker
# daemon (started if none answers), the 6-minute soak (e2e/soak_test.go,
# docs/soak.md) included.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ensure_go
ensure_cgo
log "go vet"
go vet ./...
log "unit tests (-race)"
go test -race -count=1 ./...
# Each fuzz target (func FuzzX in a _test.go file) then fuzzes FUZZTIME
# inputs (20000x, a few seconds each): the unit tests above ran their seed
# corpora already, and -fuzz takes one target per run. A count, not a
# duration: with a duration, Go's fuzzer can end a run that found nothing
# with "context deadline exceeded" and a failure (seen here in
# FuzzParseTimestamp). A failing input is written to the package's
# testdata/fuzz/FuzzX/: commit it with the fix, as a regression seed.
fuzz_targets() { # prints "<package dir> <target>" lines
  grep -rl --include='*_test.go' --exclude-dir=e2e --exclude-dir=tools '^func Fuzz' . | sort |
    while read -r file; do
      sed -n "s|^func \(Fuzz[A-Za-z0-9_]*\)(.*|$(dirname "$file") \1|p" "$file"
    done
}
fuzz_log="${TMPDIR:-/tmp}/berth-fuzz.log"
while read -r pkg target; do
  log "fuzz $target ($pkg, ${FUZZTIME:-20000x})"
  if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "${FUZZTIME:-20000x}" "$pkg" >"$fuzz_log" 2>&1; then
    tail -n 30 "$fuzz_log"
    log "$target failed (full log: $fuzz_log)"
    exit 1
  fi
done < <(fuzz_targets)
ensure_docker
ensure_busybox
log "e2e tests against the Docker daemon (-race)"
log_file="${TMPDIR:-/tmp}/berth-e2e.log"
set +e
BERTH_E2E=1 go test -race -count=1 -tags e2e -timeout 40m -v ./e2e/... >"$log_file" 2>&1
rc=$?
set -e
# The full log is long; show each test's verdict and the figures it measured.
grep -E '^(\s*--- |ok |FAIL|PASS$|panic:)|figure:' "$log_file" || true
[ "$rc" -eq 0 ] || { log "e2e failed (full log: $log_file); its last lines:"; tail -n 40 "$log_file"; exit "$rc"; }
# The benchmark's short variant (100k lines, 50 containers): fails only on a
# figure twice as bad as docs/BENCHMARKS.md documents (make bench: the full one).
log "benchmark, short variant (make bench-ci)"
make -s bench-ci
