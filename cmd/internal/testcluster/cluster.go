package testcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PollInterval is how often the Wait methods poll.
const PollInterval = 50 * time.Millisecond

// Options configure a cluster.
type Options struct {
	N       int    // replicas, named cp-1..cp-N; at least 1
	BinDir  string // holds kuma-cp; "" means $KUMA_BIN_DIR
	BaseDir string // data dirs and logs; "" means a temporary dir that Close removes
	// ExtraArgs are appended to every replica's `kuma-cp run` arguments.
	ExtraArgs []string
	// ReplicaArgs, if set, returns more arguments for replica i (1-based).
	ReplicaArgs func(i int) []string
	// Env is added to the parent's environment for every replica.
	Env []string
	// Logf receives progress and, from DumpLogs, the replicas' logs. nil discards.
	Logf func(format string, args ...any)
	// StartTogether starts every process back to back, without waiting in
	// between. Otherwise each replica is started once the previous one
	// listens on its API address.
	StartTogether bool
	// BootstrapExpect is passed as --bootstrap-expect; 0 means N.
	BootstrapExpect int
	// StopTimeout is how long Stop waits after SIGTERM; 0 means DefaultStopTimeout.
	StopTimeout time.Duration
}

// Replica is one kuma-cp process of a cluster. Its ports and data dir stay
// the same across restarts.
type Replica struct {
	*Process

	Index      int // 1-based
	Name       string
	APIAddr    string // host:port
	XDSAddr    string
	KDSAddr    string
	RaftAddr   string
	GossipAddr string
	DataDir    string
}

// APIURL is the base URL of the replica's REST API, without a trailing slash.
func (r *Replica) APIURL() string { return "http://" + r.APIAddr }

// Restart starts the replica again with the same arguments, ports and data
// dir, stopping it first (SIGTERM) if it is running. It does not wait for
// readiness: use Cluster.WaitReady.
func (r *Replica) Restart(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.Running() {
		if err := r.Stop(); err != nil {
			return fmt.Errorf("restart %s: %w", r.Name, err)
		}
	}
	if err := r.Start(); err != nil {
		return fmt.Errorf("restart %s: %w", r.Name, err)
	}
	return nil
}

// Ready reports whether GET /ready answers 200, with the body otherwise.
func (r *Replica) Ready(ctx context.Context) (bool, string) {
	status, _, body, err := pollClient.Get(ctx, r.APIURL()+"/ready")
	if err != nil {
		return false, err.Error()
	}
	return status == http.StatusOK, strings.TrimSpace(string(body))
}

// ReplicaStatus is one entry of GET /cluster.
type ReplicaStatus struct {
	Name         string `json:"name"`
	APIAddress   string `json:"apiAddress"`
	XDSAddress   string `json:"xdsAddress"`
	RaftAddress  string `json:"raftAddress"`
	Role         string `json:"role"`
	Suffrage     string `json:"suffrage"`
	LastIndex    uint64 `json:"lastIndex"`
	AppliedIndex uint64 `json:"appliedIndex"`
	Healthy      bool   `json:"healthy"`
	Version      string `json:"version"`
}

// ClusterStatus is the answer of GET /cluster.
type ClusterStatus struct {
	Leader   string          `json:"leader"`
	Replicas []ReplicaStatus `json:"replicas"`
}

// Status fetches GET /cluster from this replica.
func (r *Replica) Status(ctx context.Context) (*ClusterStatus, error) {
	status, _, body, err := pollClient.Get(ctx, r.APIURL()+"/cluster")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("GET %s/cluster: status %d: %s", r.APIURL(), status, strings.TrimSpace(string(body)))
	}
	var cs ClusterStatus
	if err := json.Unmarshal(body, &cs); err != nil {
		return nil, fmt.Errorf("GET %s/cluster: decode: %w", r.APIURL(), err)
	}
	return &cs, nil
}

// pollClient has a short timeout so that a paused replica does not stall a poll.
var pollClient = NewClient(2 * time.Second)

// Cluster is a set of kuma-cp replicas on 127.0.0.1. Close is always safe
// to call, also after a failed Start.
type Cluster struct {
	opts     Options
	baseDir  string
	tempBase bool
	binPath  string

	mu struct {
		sync.Mutex
		replicas []*Replica
		closed   bool
	}
	watchStopCh chan struct{} // closed by Close: ends the context watcher
	watchDoneCh chan struct{}
}

// Start creates a cluster and starts it (see Cluster.Start).
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c := &Cluster{}
	return c, c.Start(ctx, opts)
}

// Start creates N replicas cp-1..cp-N, each with its own ports and data dir
// under BaseDir, every one joining all the others' gossip addresses with
// --bootstrap-expect N, and starts them. It does not wait for a leader: use
// WaitReady and WaitLeader. When ctx is cancelled, every replica is killed.
func (c *Cluster) Start(ctx context.Context, opts Options) error {
	if c.watchStopCh != nil {
		return errors.New("testcluster: Start called twice")
	}
	if opts.N < 1 {
		return fmt.Errorf("testcluster: Options.N must be at least 1, got %d", opts.N)
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.BinDir == "" {
		opts.BinDir = os.Getenv(EnvBinDir)
	}
	if opts.BinDir == "" {
		return fmt.Errorf("testcluster: Options.BinDir is empty and $%s is not set", EnvBinDir)
	}
	if opts.BootstrapExpect == 0 {
		opts.BootstrapExpect = opts.N
	}
	c.opts = opts
	c.binPath = filepath.Join(opts.BinDir, "kuma-cp")
	if err := checkExecutable(c.binPath); err != nil {
		return fmt.Errorf("testcluster: %w", err)
	}
	c.baseDir = opts.BaseDir
	if c.baseDir == "" {
		dir, err := os.MkdirTemp("", "testcluster-")
		if err != nil {
			return fmt.Errorf("testcluster: %w", err)
		}
		c.baseDir, c.tempBase = dir, true
	}
	c.watchStopCh = make(chan struct{})
	c.watchDoneCh = make(chan struct{})
	go c.runWatch(ctx)

	replicas := make([]*Replica, opts.N)
	for i := range replicas {
		r, err := c.newReplica(i + 1)
		if err != nil {
			return err
		}
		replicas[i] = r
	}
	for _, r := range replicas {
		var join []string
		for _, o := range replicas {
			if o != r {
				join = append(join, o.GossipAddr)
			}
		}
		r.Args = c.args(r, join, opts.BootstrapExpect)
	}
	c.mu.Lock()
	c.mu.replicas = replicas
	c.mu.Unlock()

	opts.Logf("testcluster: starting %d replicas under %s", opts.N, c.baseDir)
	if err := c.startAll(ctx, replicas); err != nil {
		// Leave nothing running; the logs stay for DumpLogs until Close.
		for _, r := range replicas {
			_ = r.Kill()
		}
		return err
	}
	return nil
}

func (c *Cluster) startAll(ctx context.Context, replicas []*Replica) error {
	for _, r := range replicas {
		if err := r.Start(); err != nil {
			return err
		}
		if !c.opts.StartTogether {
			if err := waitListening(ctx, r); err != nil {
				return err
			}
		}
	}
	return nil
}

// Add starts one more replica cp-(N+1) that joins every existing replica.
// extraArgs are appended to its arguments.
func (c *Cluster) Add(ctx context.Context, extraArgs ...string) (*Replica, error) {
	c.mu.Lock()
	if c.mu.closed || c.watchStopCh == nil {
		c.mu.Unlock()
		return nil, errors.New("testcluster: Add on a cluster that is not started or closed")
	}
	existing := slices.Clone(c.mu.replicas)
	c.mu.Unlock()
	r, err := c.newReplica(len(existing) + 1)
	if err != nil {
		return nil, err
	}
	var join []string
	for _, o := range existing {
		join = append(join, o.GossipAddr)
	}
	r.Args = append(c.args(r, join, c.opts.BootstrapExpect), extraArgs...)
	c.mu.Lock()
	c.mu.replicas = append(c.mu.replicas, r)
	c.mu.Unlock()
	if err := r.Start(); err != nil {
		return nil, err
	}
	return r, waitListening(ctx, r)
}

func (c *Cluster) newReplica(i int) (*Replica, error) {
	ports, err := FreePorts(5)
	if err != nil {
		return nil, fmt.Errorf("testcluster: %w", err)
	}
	name := "cp-" + strconv.Itoa(i)
	dataDir := filepath.Join(c.baseDir, name)
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("testcluster: %w", err)
	}
	addr := func(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }
	return &Replica{
		Process: &Process{
			Name:        name,
			Path:        c.binPath,
			Env:         append(os.Environ(), c.opts.Env...),
			LogPath:     filepath.Join(c.baseDir, name+".log"),
			StopTimeout: c.opts.StopTimeout,
		},
		Index:      i,
		Name:       name,
		APIAddr:    addr(ports[0]),
		XDSAddr:    addr(ports[1]),
		KDSAddr:    addr(ports[2]),
		RaftAddr:   addr(ports[3]),
		GossipAddr: addr(ports[4]),
		DataDir:    dataDir,
	}, nil
}

func (c *Cluster) args(r *Replica, join []string, expect int) []string {
	args := []string{"run",
		"--name", r.Name,
		"--data-dir", r.DataDir,
		"--api-addr", r.APIAddr,
		"--xds-addr", r.XDSAddr,
		"--kds-addr", r.KDSAddr,
		"--raft-addr", r.RaftAddr,
		"--gossip-addr", r.GossipAddr,
		"--advertise-host", "127.0.0.1",
		"--bootstrap-expect", strconv.Itoa(expect),
	}
	if len(join) > 0 {
		args = append(args, "--join", strings.Join(join, ","))
	}
	args = append(args, c.opts.ExtraArgs...)
	if c.opts.ReplicaArgs != nil {
		args = append(args, c.opts.ReplicaArgs(r.Index)...)
	}
	return args
}

// runWatch kills every replica when the Start context ends before Close.
func (c *Cluster) runWatch(ctx context.Context) {
	defer close(c.watchDoneCh)
	select {
	case <-ctx.Done():
		c.opts.Logf("testcluster: context ended (%v): killing every replica", ctx.Err())
		for _, r := range c.Replicas() {
			_ = r.Kill()
		}
	case <-c.watchStopCh:
	}
}

// waitListening waits until r accepts TCP connections on its API address, or
// fails if r exits first.
func waitListening(ctx context.Context, r *Replica) error {
	return poll(ctx, "replica "+r.Name+" listening on "+r.APIAddr, func(ctx context.Context) (bool, error) {
		if !r.Running() {
			return false, fmt.Errorf("%s exited (%v); log tail:\n%s", r.Name, r.ExitErr(), r.LogTail(4096))
		}
		conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", r.APIAddr)
		if err != nil {
			return false, nil
		}
		conn.Close()
		return true, nil
	})
}

// poll calls cond every PollInterval until it returns true or an error, or
// ctx ends (the error then says what was awaited and the last reason).
func poll(ctx context.Context, what string, cond func(ctx context.Context) (bool, error)) error {
	t := time.NewTicker(PollInterval)
	defer t.Stop()
	for {
		ok, err := cond(ctx)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// Replicas returns every replica, running or not, in index order.
func (c *Cluster) Replicas() []*Replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.mu.replicas)
}

// Replica returns cp-i (1-based), or nil.
func (c *Cluster) Replica(i int) *Replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 1 || i > len(c.mu.replicas) {
		return nil
	}
	return c.mu.replicas[i-1]
}

// ByName returns the replica with that name, or nil.
func (c *Cluster) ByName(name string) *Replica {
	for _, r := range c.Replicas() {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Responsive returns the replicas that are running and not paused.
func (c *Cluster) Responsive() []*Replica {
	var out []*Replica
	for _, r := range c.Replicas() {
		if r.Running() && !r.Paused() {
			out = append(out, r)
		}
	}
	return out
}

// BaseDir is where the data dirs and logs are.
func (c *Cluster) BaseDir() string { return c.baseDir }

// WaitReady polls GET /ready on the given replicas (all replicas if none are
// given) until each answers 200. It fails early if one of them exits.
func (c *Cluster) WaitReady(ctx context.Context, replicas ...*Replica) error {
	if len(replicas) == 0 {
		replicas = c.Replicas()
	}
	for _, r := range replicas {
		var reason string
		err := poll(ctx, r.Name+" ready", func(ctx context.Context) (bool, error) {
			if !r.Running() {
				return false, fmt.Errorf("%s is not running (%v)", r.Name, r.ExitErr())
			}
			var ok bool
			ok, reason = r.Ready(ctx)
			return ok, nil
		})
		if err != nil {
			return fmt.Errorf("%w (last answer: %s)", err, reason)
		}
	}
	return nil
}

// WaitLeader polls GET /cluster on every running, unpaused replica until all
// of them name the same leader and that leader is one of them; it returns the
// leader.
func (c *Cluster) WaitLeader(ctx context.Context) (*Replica, error) {
	var leader *Replica
	var last string
	err := poll(ctx, "one leader among the running replicas", func(ctx context.Context) (bool, error) {
		leader = nil
		up := c.Responsive()
		if len(up) == 0 {
			return false, errors.New("no replica is running")
		}
		name := ""
		for _, r := range up {
			st, err := r.Status(ctx)
			if err != nil {
				last = err.Error()
				return false, nil
			}
			if st.Leader == "" {
				last = r.Name + " sees no leader"
				return false, nil
			}
			if name != "" && st.Leader != name {
				last = fmt.Sprintf("replicas disagree: %q vs %q", name, st.Leader)
				return false, nil
			}
			name = st.Leader
		}
		for _, r := range up {
			if r.Name == name {
				leader = r
				return true, nil
			}
		}
		last = fmt.Sprintf("leader %q is not a running replica", name)
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w (last: %s)", err, last)
	}
	return leader, nil
}

// WaitHealthy waits until every running, unpaused replica reports the same
// leader and lists every replica of the cluster (running or not) as healthy.
// Use it after a restart, before the next fault.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	var last string
	want := c.Replicas()
	err := poll(ctx, "every replica healthy", func(ctx context.Context) (bool, error) {
		up := c.Responsive()
		if len(up) == 0 {
			return false, errors.New("no replica is running")
		}
		leader := ""
		for _, r := range up {
			st, err := r.Status(ctx)
			if err != nil {
				last = err.Error()
				return false, nil
			}
			if st.Leader == "" || (leader != "" && st.Leader != leader) {
				last = fmt.Sprintf("%s sees leader %q, others %q", r.Name, st.Leader, leader)
				return false, nil
			}
			leader = st.Leader
			healthy := map[string]bool{}
			for _, rs := range st.Replicas {
				healthy[rs.Name] = rs.Healthy
			}
			for _, w := range want {
				if !healthy[w.Name] {
					last = fmt.Sprintf("%s does not see %s healthy", r.Name, w.Name)
					return false, nil
				}
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last: %s)", err, last)
	}
	return nil
}

// Leader asks the running replicas once, in order, and returns the leader
// named by the first one that answers, if it is a replica of this cluster.
func (c *Cluster) Leader(ctx context.Context) (*Replica, error) {
	var errs []error
	for _, r := range c.Responsive() {
		st, err := r.Status(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st.Leader == "" {
			errs = append(errs, fmt.Errorf("%s sees no leader", r.Name))
			continue
		}
		if l := c.ByName(st.Leader); l != nil {
			return l, nil
		}
		return nil, fmt.Errorf("%s names leader %q, not a replica of this cluster", r.Name, st.Leader)
	}
	errs = append(errs, errors.New("no leader known"))
	return nil, errors.Join(errs...)
}

// Followers returns the running, unpaused replicas other than leader.
func (c *Cluster) Followers(leader *Replica) []*Replica {
	var out []*Replica
	for _, r := range c.Responsive() {
		if r != leader {
			out = append(out, r)
		}
	}
	return out
}

// ClusterIDs returns the clusterId each responsive replica reports in GET /,
// by replica name. Replicas of one cluster report the same id.
func (c *Cluster) ClusterIDs(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	for _, r := range c.Responsive() {
		status, _, body, err := pollClient.Get(ctx, r.APIURL()+"/")
		if err != nil {
			return nil, err
		}
		if status != http.StatusOK {
			return nil, fmt.Errorf("GET %s/: status %d", r.APIURL(), status)
		}
		var idx struct {
			ClusterID string `json:"clusterId"`
		}
		if err := json.Unmarshal(body, &idx); err != nil {
			return nil, fmt.Errorf("GET %s/: decode: %w", r.APIURL(), err)
		}
		out[r.Name] = idx.ClusterID
	}
	return out, nil
}

// DumpLogs writes every replica's log through Logf (the last maxBytes of
// each; 0 means 64 KiB). Call it when a test fails.
func (c *Cluster) DumpLogs(maxBytes ...int) {
	limit := 64 << 10
	if len(maxBytes) > 0 && maxBytes[0] > 0 {
		limit = maxBytes[0]
	}
	for _, r := range c.Replicas() {
		c.opts.Logf("===== %s (pid %d, running %v) log %s:\n%s", r.Name, r.PID(), r.Running(), r.LogPath, r.LogTail(limit))
	}
}

// Close stops every replica (SIGTERM, then SIGKILL after StopTimeout), in
// parallel, and removes BaseDir if Start created it. It is idempotent.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return nil
	}
	c.mu.closed = true
	replicas := slices.Clone(c.mu.replicas)
	c.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, len(replicas))
	for i, r := range replicas {
		wg.Go(func() { errs[i] = r.Stop() })
	}
	wg.Wait()
	if c.watchStopCh != nil {
		close(c.watchStopCh)
		<-c.watchDoneCh
	}
	if c.tempBase {
		if err := os.RemoveAll(c.baseDir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
