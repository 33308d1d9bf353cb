// Package workload drives a chaos run's clients. A Workload issues
// operations against the replicas while the nemesis works, records each one
// in the history, and after healing does the final reads the checkers need.
// The REST workload is the only one so far; a proxy traffic workload (TCP
// through kuma-dp) will implement Traffic as well.
package workload

import (
	"context"
	"log/slog"

	"github.com/kuma-ha/kuma-ha/chaos/check"
	"github.com/kuma-ha/kuma-ha/chaos/history"
)

// Target is a replica clients may send requests to.
type Target struct {
	Name        string
	API         string // base URL
	XDS         string // host:port, for proxies
	Incarnation int    // how many times the harness has started it
}

// Env is what a workload gets from the runner.
type Env struct {
	// Targets returns the replicas as they are now.
	Targets  func() []Target
	Recorder *history.Recorder
	Seed     uint64
	Logger   *slog.Logger
}

// Workload is one kind of client load.
type Workload interface {
	Name() string
	// Run issues operations until ctx ends or the workload's own bound is
	// reached. Operations in flight when ctx ends complete (bounded by
	// their timeout) and are recorded before Run returns.
	Run(ctx context.Context, env Env) error
	// Final reads, after every fault is healed, what the checkers need to
	// judge durability (recorded with Final set).
	Final(ctx context.Context, env Env) error
}

// Traffic is implemented by workloads that send data plane traffic
// through proxies; the proxy-traffic checker judges its requests.
type Traffic interface {
	Workload
	Requests() []check.ProxyRequest
}
