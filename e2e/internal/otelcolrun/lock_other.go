//go:build !unix

package otelcolrun

import "context"

// lockFile is a no-op where flock is not available: concurrent builds then
// each build and rename, which is wasteful but safe.
func lockFile(context.Context, string) (func(), error) { return func() {}, nil }
