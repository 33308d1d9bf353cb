// Package dp is the data plane proxy agent: an xDS client, a persisted cache of
// the last good configuration and a built-in L4 proxy. It speaks xDS like Envoy
// and imports no server package.
//
// Arrives with the data plane issue; empty in this release.
package dp
