// Package xdsclient is an ADS client that behaves like Envoy: one stream
// (state of the world, or incremental with Config.Delta) to one control
// plane replica, LDS and CDS as wildcards, EDS for the clusters of type EDS,
// every resource validated with ValidateAll before it is ACKed, invalid
// responses NACKed while the previous config stays in use.
//
// It never drops config: when a stream breaks, or a replica sheds it with
// UNAVAILABLE "kuma-cp: reconnect to another replica: <addr>", the client
// keeps its last accepted config and versions, reconnects with jittered
// exponential backoff to another replica (the one named in the hint, else
// the next one round robin), and tells the new replica what it has, so an
// unchanged config is not sent again.
//
// It is used by kuma-dp, by the xDS load tool and by integration tests. It
// speaks xDS only and imports no package of the control plane.
package xdsclient
