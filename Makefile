# berth: make run (collect the local daemon's logs to stdout), make test
# (every test, e2e included). Both set up what they need.
.PHONY: run test build bench soak

# make run ARGS='--http-addr 127.0.0.1:9478': ARGS are passed to berth.
ARGS ?=
run:
	@scripts/run.sh $(ARGS)

test:
	@scripts/test.sh

build:
	@. scripts/lib.sh && ensure_go && go build -trimpath -o bin/berth ./cmd/berth

# bench: berth against the Docker client's floor on the local daemon
# (bench/, docs/BENCHMARKS.md; about 12 minutes): prints the table, writes
# docs/bench.csv, docs/bench-scale.csv, docs/bench.md, and draws
# docs/bench.png with tools/benchplot (its own module). Sizes:
# BERTH_BENCH_LINES, BERTH_BENCH_CONTAINERS, BERTH_BENCH_IDLE.
bench:
	@. scripts/lib.sh && ensure_go && ensure_docker || exit 1; \
	  go run ./bench && (cd tools/benchplot && go run . -rows ../../docs/bench.csv -scale ../../docs/bench-scale.csv -out ../../docs/bench.png)

# bench-ci: the short variant meant for CI (100k lines, 50 containers, under 4
# minutes); fails only on a figure twice as bad as docs/BENCHMARKS.md's
# limits table.
.PHONY: bench-ci bench-micro
bench-ci:
	@. scripts/lib.sh && ensure_go && ensure_docker || exit 1; \
	  BERTH_BENCH_LINES=100000 BERTH_BENCH_CONTAINERS=50 BERTH_BENCH_IDLE=15s \
	  BERTH_BENCH_OUT=$${TMPDIR:-/tmp}/berth-bench-ci BERTH_BENCH_LOG=$${TMPDIR:-/tmp}/berth-bench-ci.log \
	  BERTH_BENCH_CHECK=docs/BENCHMARKS.md go run ./bench

# bench-micro: the go test micro-benchmarks of the hot paths.
bench-micro:
	@. scripts/lib.sh && ensure_go && go test -run '^$$' -bench . -benchmem ./collectors/ ./export/

# soak-plot: run the soak test (e2e/soak_test.go, about 6 minutes against the
# local Docker daemon), which writes its samples to docs/soak.csv, then draw
# docs/soak.png from them with tools/soakplot (its own module: gonum/plot stays
# out of berth's dependencies). The plot is drawn even when the soak fails
# (if it got as far as writing its samples); the target then fails with the
# soak's status.
.PHONY: soak-plot
soak-plot:
	@. scripts/lib.sh && ensure_go && ensure_cgo && ensure_docker || exit 1; \
	  status=0; start=$$(date +%s); \
	  BERTH_E2E=1 BERTH_SOAK_OUT=docs/soak.csv go test -tags e2e -race -count=1 -run '^TestSoak$$' -v -timeout 20m ./e2e/ || status=$$?; \
	  if [ -s docs/soak.csv ] && [ $$(stat -c %Y docs/soak.csv) -ge $$start ]; then \
	    (cd tools/soakplot && go run . -in ../../docs/soak.csv -out ../../docs/soak.png) || status=$$?; \
	  else echo "soak-plot: the soak wrote no docs/soak.csv; nothing to plot" >&2; fi; \
	  exit $$status

# The soak: 50 containers alive, 600 lifecycles, a frozen stream every 30 s;
# asserts flat goroutine and FD curves and no lost line (about 6 minutes).
soak:
	@. scripts/lib.sh && ensure_go && ensure_cgo && ensure_docker && BERTH_E2E=1 go test -tags e2e -race -count=1 -v -timeout 20m -run '^TestSoak$$' ./e2e/
