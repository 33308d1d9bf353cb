// Package ops serves the control plane's HTTP API on --api-addr: Kuma's REST
// API for resources (so Kuma's kumactl works), GET / (index), /ready,
// /cluster, /metrics and the DataplaneOverview views.
//
// It owns the mapping from typed errors (fsm sentinels, validation errors,
// cluster.ErrNoQuorum, ...) to HTTP status codes and Kuma's error shape, in
// one table (errors.go). Reads are served from the local state (State, a
// *fsm.FSM); every write goes through Backend.Apply (the cluster layer), never to the FSM directly.
// It must not import cluster internals beyond the sentinel errors and Status,
// and it starts no goroutines of its own: net/http owns the request goroutines.
package ops
