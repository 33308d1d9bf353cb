package backend

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Network modes of the process backend.
const (
	// NetLoopback: every replica on 127.0.0.1 with its own ports. No
	// network faults are possible.
	NetLoopback = "loopback"
	// NetNamespace: every replica in its own network namespace, linked to a
	// bridge by a veth pair; partitions with iptables and slow networks
	// with tc netem inside the namespaces. Needs root, ip, iptables, tc.
	NetNamespace = "netns"
	// NetAuto: namespaces when possible, else loopback (with the reason
	// recorded as the unavailable network faults).
	NetAuto = "auto"
)

// stopGrace is how long a graceful stop may take before SIGKILL.
const stopGrace = 15 * time.Second

// Process runs the replicas as child processes of the harness.
type Process struct {
	opts    Options
	network string

	mu struct {
		sync.Mutex
		started bool
		closed  bool
		nodes   []*procNode
		ns      *netnsNet
		unavail map[Fault]string
		notes   []string
	}
}

type procNode struct {
	spec replicaSpec
	node Node
	p    *proc
	ns   int // index in the namespace network, -1 on loopback
}

// NewProcess returns a process backend; network is NetLoopback,
// NetNamespace or NetAuto.
func NewProcess(opts Options, network string) (*Process, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("process backend: %w", err)
	}
	switch network {
	case NetLoopback, NetNamespace, NetAuto:
	default:
		return nil, fmt.Errorf("network: want %s, %s or %s, got %q", NetLoopback, NetNamespace, NetAuto, network)
	}
	if _, err := os.Stat(filepath.Join(opts.BinDir, "kuma-cp")); err != nil {
		return nil, fmt.Errorf("bin-dir: %w", err)
	}
	return &Process{opts: opts, network: network}, nil
}

// Name is "process/loopback" or "process/netns" once started.
func (b *Process) Name() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mu.ns != nil {
		return "process/" + NetNamespace
	}
	if b.mu.started {
		return "process/" + NetLoopback
	}
	return "process"
}

// Start sets up the network (namespaces when asked and possible) and starts
// every replica.
func (b *Process) Start(ctx context.Context) error {
	b.mu.Lock()
	if b.mu.started {
		b.mu.Unlock()
		return errors.New("process backend: Start called twice")
	}
	b.mu.started = true
	b.mu.unavail = map[Fault]string{
		FaultClockSkew: "replicas are processes sharing the host's kernel clock; Go reads CLOCK_REALTIME and CLOCK_MONOTONIC through the vDSO, which no per-process setting can skew (time namespaces offset only the monotonic and boot clocks, by a constant, which changes no timer)",
	}
	b.mu.Unlock()

	logDir := filepath.Join(b.opts.WorkDir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return fmt.Errorf("process backend: %w", err)
	}
	var ns *netnsNet
	if b.network != NetLoopback {
		var err error
		ns, err = newNetnsNet(ctx, b.opts.Replicas, b.opts.Logger)
		if err != nil {
			if b.network == NetNamespace {
				return fmt.Errorf("process backend: network namespaces: %w", err)
			}
			b.opts.Logger.Warn("network namespaces unavailable; replicas share 127.0.0.1 and network faults are skipped", "reason", err)
			b.setUnavailable(FaultPartition, "no network namespaces: "+err.Error())
			b.setUnavailable(FaultNetem, "no network namespaces: "+err.Error())
		} else if ns.shapeErr != nil {
			b.setUnavailable(FaultNetem, "neither tc netem nor tbf with iptables loss works in a namespace: "+ns.shapeErr.Error())
		} else if !ns.hasNetem {
			b.mu.Lock()
			b.mu.notes = append(b.mu.notes, noNetemNote)
			b.mu.Unlock()
		}
	} else {
		reason := "replicas share 127.0.0.1 (--network loopback): network faults need a network namespace per replica (run as root with --network netns or auto)"
		b.setUnavailable(FaultPartition, reason)
		b.setUnavailable(FaultNetem, reason)
	}

	specs := make([]replicaSpec, b.opts.Replicas)
	if ns != nil {
		for i := range specs {
			ip := ns.ip(i)
			specs[i] = replicaSpec{
				name: fmt.Sprintf("cp-%d", i+1), host: ip,
				api: hostPort(ip, portAPI), xds: hostPort(ip, portXDS), kds: hostPort(ip, portKDS),
				raft: hostPort(ip, portRaft), gossip: hostPort(ip, portGossip),
			}
		}
	} else {
		ports, err := freePorts(5 * b.opts.Replicas)
		if err != nil {
			return fmt.Errorf("process backend: %w", err)
		}
		for i := range specs {
			p := ports[5*i:]
			specs[i] = replicaSpec{
				name: fmt.Sprintf("cp-%d", i+1), host: "127.0.0.1",
				api: hostPort("127.0.0.1", p[0]), xds: hostPort("127.0.0.1", p[1]), kds: hostPort("127.0.0.1", p[2]),
				raft: hostPort("127.0.0.1", p[3]), gossip: hostPort("127.0.0.1", p[4]),
			}
		}
	}
	bin := filepath.Join(b.opts.BinDir, "kuma-cp")
	nodes := make([]*procNode, len(specs))
	for i := range specs {
		specs[i].dataDir = filepath.Join(b.opts.WorkDir, "data", specs[i].name)
	}
	for i, s := range specs {
		argv := append([]string{bin}, runArgs(s, specs, b.opts.ExtraArgs)...)
		nsIdx := -1
		if ns != nil {
			argv = ns.wrap(i, argv)
			nsIdx = i
		}
		nodes[i] = &procNode{
			spec: s,
			node: Node{Name: s.name, API: "http://" + s.api, Host: s.host, XDS: s.xds},
			p:    &proc{name: s.name, argv: argv, logPath: filepath.Join(logDir, s.name+".log")},
			ns:   nsIdx,
		}
	}
	b.mu.Lock()
	b.mu.nodes = nodes
	b.mu.ns = ns
	closedAlready := b.mu.closed
	b.mu.Unlock()
	if closedAlready {
		return errors.New("process backend: closed during Start")
	}
	for _, n := range nodes {
		if err := n.p.start(); err != nil {
			return fmt.Errorf("process backend: %w", err)
		}
	}
	for _, n := range nodes {
		if err := waitListening(ctx, n.spec.api, n.p.running); err != nil {
			return fmt.Errorf("process backend: %s: %w", n.spec.name, err)
		}
	}
	return nil
}

func (b *Process) setUnavailable(f Fault, reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mu.unavail[f] = reason
}

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// Nodes lists the replicas.
func (b *Process) Nodes() []Node {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Node, len(b.mu.nodes))
	for i, n := range b.mu.nodes {
		out[i] = n.node
	}
	return out
}

// Unavailable names the faults that cannot be injected.
func (b *Process) Unavailable() map[Fault]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[Fault]string{}
	for k, v := range b.mu.unavail {
		out[k] = v
	}
	return out
}

func (b *Process) node(name string) (*procNode, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, n := range b.mu.nodes {
		if n.spec.name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no replica %q", name)
}

// Kill sends SIGKILL.
func (b *Process) Kill(_ context.Context, name string) error {
	n, err := b.node(name)
	if err != nil {
		return err
	}
	return n.p.kill()
}

// Stop sends SIGTERM and waits (SIGKILL after a grace period).
func (b *Process) Stop(_ context.Context, name string) error {
	n, err := b.node(name)
	if err != nil {
		return err
	}
	return n.p.stop(stopGrace)
}

// StartNode starts a stopped replica with its data dir and returns once it listens.
func (b *Process) StartNode(ctx context.Context, name string) error {
	n, err := b.node(name)
	if err != nil {
		return err
	}
	if err := n.p.start(); err != nil {
		return err
	}
	return waitListening(ctx, n.spec.api, n.p.running)
}

// Pause sends SIGSTOP.
func (b *Process) Pause(_ context.Context, name string) error {
	n, err := b.node(name)
	if err != nil {
		return err
	}
	return n.p.pause()
}

// Resume sends SIGCONT.
func (b *Process) Resume(_ context.Context, name string) error {
	n, err := b.node(name)
	if err != nil {
		return err
	}
	return n.p.resume()
}

// Running reports whether the replica's process is alive (paused or not).
func (b *Process) Running(name string) bool {
	n, err := b.node(name)
	return err == nil && n.p.running()
}

// Paused reports whether the replica is stopped by SIGSTOP.
func (b *Process) Paused(name string) bool {
	n, err := b.node(name)
	return err == nil && n.p.paused()
}

// Incarnation counts the replica's starts.
func (b *Process) Incarnation(name string) int {
	n, err := b.node(name)
	if err != nil {
		return 0
	}
	return n.p.starts()
}

// SetPartition cuts the given links (namespaces only).
func (b *Process) SetPartition(ctx context.Context, cut []Pair) error {
	b.mu.Lock()
	ns := b.mu.ns
	reason := b.mu.unavail[FaultPartition]
	nodes := b.mu.nodes
	b.mu.Unlock()
	if ns == nil {
		return fmt.Errorf("%w: partition: %s", ErrUnavailable, reason)
	}
	ipOf := map[string]string{}
	for _, n := range nodes {
		ipOf[n.spec.name] = n.spec.host
	}
	blocked := blockedPeers(cut)
	var errs []error
	for _, n := range nodes {
		var ips []string
		for _, peer := range blocked[n.spec.name] {
			ips = append(ips, ipOf[peer])
		}
		if err := ns.setBlocked(ctx, n.ns, ips); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SetNetem slows one replica's network (namespaces only).
func (b *Process) SetNetem(ctx context.Context, name string, nm Netem) (string, error) {
	b.mu.Lock()
	ns := b.mu.ns
	reason, unavailable := b.mu.unavail[FaultNetem]
	b.mu.Unlock()
	if ns == nil || unavailable {
		return "", fmt.Errorf("%w: netem: %s", ErrUnavailable, reason)
	}
	n, err := b.node(name)
	if err != nil {
		return "", err
	}
	return ns.setNetem(ctx, n.ns, nm)
}

// Notes are remarks about how faults are injected on this machine.
func (b *Process) Notes() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.mu.notes...)
}

// CollectLogs copies each replica's log to dir/NAME.log (the logs are
// written under WorkDir/logs; nothing to do when dir is that directory).
func (b *Process) CollectLogs(_ context.Context, dir string) error {
	var errs []error
	for _, n := range b.snapshotNodes() {
		dst := filepath.Join(dir, n.spec.name+".log")
		if filepath.Clean(dst) == filepath.Clean(n.p.logPath) {
			continue
		}
		if err := copyFile(n.p.logPath, dst); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (b *Process) snapshotNodes() []*procNode {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*procNode(nil), b.mu.nodes...)
}

// Close stops every replica (SIGTERM, in parallel) and removes the namespaces.
func (b *Process) Close() error {
	b.mu.Lock()
	if b.mu.closed {
		b.mu.Unlock()
		return nil
	}
	b.mu.closed = true
	nodes := b.mu.nodes
	ns := b.mu.ns
	b.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(nodes)+1)
	for i, n := range nodes {
		wg.Go(func() {
			if err := n.p.stop(stopGrace); err != nil {
				errs[i] = err
			}
		})
	}
	wg.Wait()
	if ns != nil {
		errs[len(nodes)] = ns.close()
	}
	return errors.Join(errs...)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy log: %w", err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("copy log: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy log %s: %w", src, err)
	}
	return out.Close()
}

// waitListening waits until addr accepts TCP connections, failing early if
// the process exits.
func waitListening(ctx context.Context, addr string, alive func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if !alive() {
			return fmt.Errorf("exited before listening on %s (see its log)", addr)
		}
		conn, err := (&net.Dialer{Timeout: 500 * time.Millisecond}).DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to listen: %w", addr, ctx.Err())
		case <-t.C:
		}
	}
}

// handedOut remembers every port freePorts returned in this process: a
// port taken by a replica that is down at the moment (killed, restarting)
// is free on the machine but must not be handed to anything else.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// freePorts picks n distinct ports in 10000-32000 that are free on
// 127.0.0.1 for TCP and UDP (gossip uses both) and were never returned
// before by this process. Below the ephemeral range, so a killed replica
// finds its ports free when it restarts.
func freePorts(n int) ([]int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	seen := map[int]bool{}
	var out []int
	for attempts := 0; len(out) < n; attempts++ {
		if attempts > 100*n {
			return nil, errors.New("free ports: too many attempts")
		}
		port := 10000 + rand.IntN(22000)
		if seen[port] || handedOut.ports[port] {
			continue
		}
		seen[port] = true
		tl, err := net.Listen("tcp", hostPort("127.0.0.1", port))
		if err != nil {
			continue
		}
		ul, err := net.ListenPacket("udp", hostPort("127.0.0.1", port))
		tl.Close()
		if err != nil {
			continue
		}
		ul.Close()
		out = append(out, port)
	}
	for _, p := range out {
		handedOut.ports[p] = true
	}
	return out, nil
}
