// Package e2e holds berth's end-to-end tests against a real Docker daemon.
//
// The tests are behind the build tag e2e, so that `go test ./...` does not
// need a daemon; scripts/test.sh (make test) runs them as
//
//	BERTH_E2E=1 go test -tags e2e -race -count=1 -timeout 40m ./e2e/...
//
// See README.md in this directory for what each test proves.
package e2e
