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

bench:
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
