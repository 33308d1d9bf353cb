//go:build !unix

package agent

// lockDir does not lock where flock is unavailable.
func lockDir(string) (func(), error) { return func() {}, nil }
