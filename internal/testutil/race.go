//go:build race

package testutil

// Race reports whether the test binary was built with the race detector,
// whose allocator makes heap measurements meaningless.
const Race = true
