package dockerapi

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: the fake
// daemon's server and handlers, the transports' connection loops and the
// tests' readers must all have returned.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
