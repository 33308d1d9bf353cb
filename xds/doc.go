// Package xds generates Envoy configuration from the replicated state and
// serves it over ADS. It reads the state through fsm's read-only view and
// change feed and never touches cluster internals.
//
// Arrives with the xDS issue; empty in this release.
package xds
