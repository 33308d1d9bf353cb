// Package backend runs the kuma-cp replicas of a chaos run and injects the
// faults that need the machine: killing, pausing and restarting processes,
// cutting the network between chosen replicas and slowing it down. Two
// backends exist: local processes (optionally each in its own network
// namespace) and Docker containers on a private network. A backend says
// which faults it cannot inject, and why.
package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Node is one replica as clients address it.
type Node struct {
	Name string // cp-1 ... cp-N
	API  string // base URL of the REST API, no trailing slash
	Host string // the address other replicas reach it at
	XDS  string // host:port of the xDS server
}

// Fault names a kind of fault a backend may be unable to inject.
type Fault string

const (
	FaultKill      Fault = "kill"      // SIGKILL and start again
	FaultPause     Fault = "pause"     // SIGSTOP / SIGCONT
	FaultRestart   Fault = "restart"   // SIGTERM and start again
	FaultPartition Fault = "partition" // drop all traffic between chosen replicas
	FaultNetem     Fault = "netem"     // delay and loss on a replica's network
	FaultClockSkew Fault = "clock-skew"
)

// ErrUnavailable is returned for a fault the backend cannot inject.
var ErrUnavailable = errors.New("fault not available in this backend")

// Netem is a slow, lossy network on one replica's interface. The zero
// value is a normal network. Delay and jitter need the kernel's sch_netem;
// loss is random drops by iptables (the statistic match) and Rate a token
// bucket (tbf), which work without it.
type Netem struct {
	Delay  time.Duration `json:"delay,omitempty"`
	Jitter time.Duration `json:"jitter,omitempty"`
	Loss   float64       `json:"loss,omitempty"` // percent, each direction
	Rate   int           `json:"rateKbit,omitempty"`
}

// IsZero reports a normal network.
func (n Netem) IsZero() bool { return n == Netem{} }

func (n Netem) String() string {
	if n.IsZero() {
		return "none"
	}
	var parts []string
	if n.Delay > 0 {
		parts = append(parts, fmt.Sprintf("delay %s±%s", n.Delay, n.Jitter))
	}
	if n.Loss > 0 {
		parts = append(parts, fmt.Sprintf("loss %.1f%%", n.Loss))
	}
	if n.Rate > 0 {
		parts = append(parts, fmt.Sprintf("rate %dkbit", n.Rate))
	}
	return strings.Join(parts, ", ")
}

// noNetemNote explains the slow network on kernels without sch_netem.
const noNetemNote = "this kernel has no sch_netem: the slow network is a tbf rate limit plus random loss (iptables statistic match), without a fixed delay"

// Noter is implemented by backends with remarks about how faults are
// injected on this machine (for the report).
type Noter interface {
	Notes() []string
}

// Pair is two replicas that must not reach each other (in either direction).
type Pair [2]string

// Backend runs the replicas of one cluster and injects faults into them.
// Methods taking a name accept the names of Nodes. All methods are safe for
// concurrent use.
type Backend interface {
	Name() string
	// Start creates every replica and starts them; it returns once each
	// accepts connections on its API address (the cluster may not have
	// formed yet).
	Start(ctx context.Context) error
	Nodes() []Node
	// Unavailable names the faults this backend cannot inject, with the reason.
	Unavailable() map[Fault]string

	Kill(ctx context.Context, name string) error // SIGKILL; waits until it is gone
	Stop(ctx context.Context, name string) error // SIGTERM, SIGKILL after a grace period
	StartNode(ctx context.Context, name string) error
	Pause(ctx context.Context, name string) error
	Resume(ctx context.Context, name string) error
	Running(name string) bool
	Paused(name string) bool
	// Incarnation counts the starts of a replica (1 after Start).
	Incarnation(name string) int

	// SetPartition replaces the set of cut links: all traffic between the
	// two replicas of each pair is dropped. nil heals every partition.
	SetPartition(ctx context.Context, cut []Pair) error
	// SetNetem slows one replica's network; the zero Netem restores it.
	// It returns what was applied (a kernel without sch_netem gets loss
	// and a rate limit but no delay).
	SetNetem(ctx context.Context, name string, n Netem) (string, error)

	// CollectLogs writes each replica's log to dir/NAME.log.
	CollectLogs(ctx context.Context, dir string) error
	// Close stops every replica and removes everything the backend created
	// (namespaces, containers, networks, firewall rules). Idempotent.
	Close() error
}

// Options are common to the backends.
type Options struct {
	Replicas int    // 3 or 5
	BinDir   string // holds kuma-cp
	WorkDir  string // data dirs and logs of this run
	// ExtraArgs are appended to every `kuma-cp run`.
	ExtraArgs []string
	Logger    *slog.Logger
}

func (o *Options) validate() error {
	if o.Replicas < 1 {
		return fmt.Errorf("replicas: must be at least 1, got %d", o.Replicas)
	}
	if o.BinDir == "" {
		return errors.New("bin-dir: empty")
	}
	if o.WorkDir == "" {
		return errors.New("work dir: empty")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Standard kuma-cp ports, used when every replica has its own address.
const (
	portAPI    = 5681
	portXDS    = 5678
	portKDS    = 5685
	portRaft   = 5690
	portGossip = 5691
)

// replicaSpec is what a replica is started with.
type replicaSpec struct {
	name                                 string
	host                                 string // advertise host and listen IP
	api, xds, kds, raft, gossip, dataDir string
}

// runArgs builds `kuma-cp run ...` for one replica joining all the others.
func runArgs(r replicaSpec, all []replicaSpec, extra []string) []string {
	var join []string
	for _, o := range all {
		if o.name != r.name {
			join = append(join, o.gossip)
		}
	}
	args := []string{"run",
		"--name", r.name,
		"--data-dir", r.dataDir,
		"--api-addr", r.api,
		"--xds-addr", r.xds,
		"--kds-addr", r.kds,
		"--raft-addr", r.raft,
		"--gossip-addr", r.gossip,
		"--advertise-host", r.host,
		"--bootstrap-expect", strconv.Itoa(len(all)),
		"--join", strings.Join(join, ","),
	}
	return append(args, extra...)
}

// run executes a command and returns its combined output in the error.
func run(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// blockedPeers returns, for each replica, the sorted names it must not reach.
func blockedPeers(cut []Pair) map[string][]string {
	out := map[string][]string{}
	for _, p := range cut {
		if p[0] == p[1] {
			continue
		}
		out[p[0]] = append(out[p[0]], p[1])
		out[p[1]] = append(out[p[1]], p[0])
	}
	for k, v := range out {
		slices.Sort(v)
		out[k] = slices.Compact(v)
	}
	return out
}

// MissingTools returns the tools of names that are not on PATH.
func MissingTools(names ...string) []string {
	var missing []string
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			missing = append(missing, n)
		}
	}
	return missing
}
