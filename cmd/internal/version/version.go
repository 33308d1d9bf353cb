// Package version holds the build version of every binary, set at link time:
//
//	go build -ldflags "-X github.com/kuma-ha/kuma-ha/cmd/internal/version.Version=1.2.3"
package version

import "runtime/debug"

// Version is the release this binary was built from.
var Version = "dev"

// Get returns Version, or the VCS revision when built without ldflags.
func Get() string {
	if Version != "dev" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return Version
}
