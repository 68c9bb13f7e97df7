# berth: make run (collect the local daemon's logs to stdout), make test
# (every test, e2e included). Both set up what they need.
.PHONY: run test build bench

run:
	@scripts/run.sh

test:
	@scripts/test.sh

build:
	@. scripts/lib.sh && ensure_go && go build -trimpath -o bin/berth ./cmd/berth

bench:
	@. scripts/lib.sh && ensure_go && go test -run '^$$' -bench . -benchmem ./collectors/ ./telemetry/
