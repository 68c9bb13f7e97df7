package events

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine (a burst, the subscriber, a
// manager) outlives the tests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
