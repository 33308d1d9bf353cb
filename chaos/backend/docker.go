package backend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// dockerLabel marks everything the Docker backend creates.
const dockerLabel = "kuma-chaos=1"

// imageRepo is the repository of the images built FROM scratch; the tag is
// a hash of the kuma-cp binary.
const imageRepo = "kuma-chaos/kuma-cp"

// Docker runs each replica in a container of an image built FROM scratch
// from the static kuma-cp binary, on a private bridge network with a fixed
// address per replica. Partitions and netem run iptables and tc from the
// host inside each container's network namespace (nsenter), so the image
// needs no tools; a restarted container gets a new namespace and the
// current rules are applied to it again before it is reported started.
type Docker struct {
	opts Options

	mu struct {
		sync.Mutex
		started bool
		closed  bool
		image   string
		network string
		nodes   []*dockerNode
		cut     []Pair
		netem   map[string]Netem
		// hasNetem: the kernel has sch_netem; shapeErr: not even the
		// fallback (tbf, iptables loss) works. Probed at Start.
		hasNetem bool
		shapeErr error
	}
	linkMu sync.Mutex // serializes rule changes
}

type dockerNode struct {
	spec      replicaSpec
	node      Node
	container string

	mu     sync.Mutex // guards the fields below
	starts int
	paused bool
	pid    int // 0 while not running
}

// NewDocker returns a Docker backend.
func NewDocker(opts Options) (*Docker, error) {
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("docker backend: %w", err)
	}
	if missing := MissingTools("docker", "nsenter", "iptables-restore", "tc"); len(missing) > 0 {
		return nil, fmt.Errorf("docker backend: missing tools: %s", strings.Join(missing, ", "))
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("docker backend: must run as root (nsenter into the containers' network namespaces)")
	}
	if _, err := os.Stat(filepath.Join(opts.BinDir, "kuma-cp")); err != nil {
		return nil, fmt.Errorf("bin-dir: %w", err)
	}
	d := &Docker{opts: opts}
	d.mu.netem = map[string]Netem{}
	return d, nil
}

// Name is "docker".
func (d *Docker) Name() string { return "docker" }

// Unavailable: clock skew, and the slow network if tc does not work.
func (d *Docker) Unavailable() map[Fault]string {
	out := map[Fault]string{
		FaultClockSkew: "containers share the host's kernel clock (CLOCK_REALTIME is not namespaced; time namespaces only offset the monotonic and boot clocks by a constant), and kuma-cp is a static Go binary that reads the clock through the vDSO, so no faketime library applies",
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.shapeErr != nil {
		out[FaultNetem] = "neither tc netem nor tbf with iptables loss works in a container's namespace: " + d.mu.shapeErr.Error()
	}
	return out
}

// Notes are remarks about how faults are injected on this machine.
func (d *Docker) Notes() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.started && !d.mu.hasNetem && d.mu.shapeErr == nil {
		return []string{noNetemNote}
	}
	return nil
}

// Start builds the image (once per binary), creates the network and starts
// the containers.
func (d *Docker) Start(ctx context.Context) error {
	d.mu.Lock()
	if d.mu.started {
		d.mu.Unlock()
		return errors.New("docker backend: Start called twice")
	}
	d.mu.started = true
	d.mu.Unlock()
	if _, err := run(ctx, "", "docker", "version", "--format", "{{.Server.Version}}"); err != nil {
		return fmt.Errorf("docker backend: no Docker daemon: %w", err)
	}
	image, err := d.buildImage(ctx)
	if err != nil {
		return err
	}
	id := fmt.Sprintf("%04x", os.Getpid()&0xffff)
	network := "kchaos-" + id
	var prefix string
	for attempt := 0; ; attempt++ {
		prefix, err = freeSubnet(ctx, "10.232", os.Getpid()+attempt*7)
		if err != nil {
			return err
		}
		_, err = run(ctx, "", "docker", "network", "create", "--driver", "bridge", "--label", dockerLabel,
			"--subnet", prefix+".0/24", "--gateway", prefix+".1", network)
		if err == nil {
			break
		}
		if attempt >= 5 || !strings.Contains(err.Error(), "overlap") {
			return fmt.Errorf("docker backend: %w", err)
		}
	}
	d.mu.Lock()
	d.mu.image, d.mu.network = image, network
	d.mu.Unlock()

	specs := make([]replicaSpec, d.opts.Replicas)
	for i := range specs {
		ip := fmt.Sprintf("%s.%d", prefix, 11+i)
		specs[i] = replicaSpec{
			name: fmt.Sprintf("cp-%d", i+1), host: ip, dataDir: "/data",
			api: hostPort(ip, portAPI), xds: hostPort(ip, portXDS), kds: hostPort(ip, portKDS),
			raft: hostPort(ip, portRaft), gossip: hostPort(ip, portGossip),
		}
	}
	nodes := make([]*dockerNode, len(specs))
	for i, s := range specs {
		container := network + "-" + s.name
		args := []string{"create", "--name", container, "--label", dockerLabel,
			"--network", network, "--ip", s.host, "--hostname", s.name,
			"--stop-timeout", strconv.Itoa(int(stopGrace.Seconds())), image}
		args = append(args, runArgs(s, specs, d.opts.ExtraArgs)...)
		nodes[i] = &dockerNode{spec: s, container: container,
			node: Node{Name: s.name, API: "http://" + s.api, Host: s.host, XDS: s.xds}}
		d.mu.Lock()
		d.mu.nodes = append(d.mu.nodes, nodes[i])
		d.mu.Unlock()
		if _, err := run(ctx, "", "docker", args...); err != nil {
			return fmt.Errorf("docker backend: %w", err)
		}
	}
	for i, n := range nodes {
		if err := d.startContainer(ctx, n); err != nil {
			return err
		}
		if i == 0 {
			hasNetem, shapeErr := probeShaping(ctx, n.nsenter)
			d.mu.Lock()
			d.mu.hasNetem, d.mu.shapeErr = hasNetem, shapeErr
			d.mu.Unlock()
		}
	}
	for _, n := range nodes {
		if err := waitListening(ctx, n.spec.api, func() bool { return true }); err != nil {
			return fmt.Errorf("docker backend: %s: %w", n.spec.name, err)
		}
	}
	d.opts.Logger.Info("docker replicas started", "image", image, "network", network, "subnet", prefix+".0/24")
	return nil
}

// buildImage builds kuma-chaos/kuma-cp:<hash of the binary> FROM scratch,
// unless it exists.
func (d *Docker) buildImage(ctx context.Context) (string, error) {
	bin := filepath.Join(d.opts.BinDir, "kuma-cp")
	f, err := os.Open(bin)
	if err != nil {
		return "", fmt.Errorf("docker backend: %w", err)
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", fmt.Errorf("docker backend: hash %s: %w", bin, err)
	}
	image := imageRepo + ":" + hex.EncodeToString(h.Sum(nil))[:12]
	if _, err := run(ctx, "", "docker", "image", "inspect", image); err == nil {
		return image, nil
	}
	dir, err := os.MkdirTemp("", "kuma-chaos-image-")
	if err != nil {
		return "", fmt.Errorf("docker backend: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := copyFile(bin, filepath.Join(dir, "kuma-cp")); err != nil {
		return "", err
	}
	if err := os.Chmod(filepath.Join(dir, "kuma-cp"), 0o755); err != nil {
		return "", err
	}
	dockerfile := "FROM scratch\nCOPY kuma-cp /kuma-cp\nENTRYPOINT [\"/kuma-cp\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return "", err
	}
	if _, err := run(ctx, "", "docker", "build", "-q", "--label", dockerLabel, "-t", image, dir); err != nil {
		return "", fmt.Errorf("docker backend: build image: %w", err)
	}
	d.opts.Logger.Info("built image", "image", image)
	// Images of older binaries are of no use: remove them (one in use by
	// another run stays; docker refuses).
	if out, err := run(ctx, "", "docker", "images", imageRepo, "--format", "{{.Repository}}:{{.Tag}}"); err == nil {
		for _, old := range strings.Fields(out) {
			if old != image {
				_, _ = run(ctx, "", "docker", "rmi", old)
			}
		}
	}
	return image, nil
}

// Nodes lists the replicas.
func (d *Docker) Nodes() []Node {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Node, len(d.mu.nodes))
	for i, n := range d.mu.nodes {
		out[i] = n.node
	}
	return out
}

func (d *Docker) node(name string) (*dockerNode, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, n := range d.mu.nodes {
		if n.spec.name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no replica %q", name)
}

// inspect returns the container's running state and pid.
func inspect(ctx context.Context, container string) (running bool, pid int, err error) {
	out, err := run(ctx, "", "docker", "inspect", "-f", "{{.State.Running}} {{.State.Pid}}", container)
	if err != nil {
		return false, 0, err
	}
	f := strings.Fields(out)
	if len(f) != 2 {
		return false, 0, fmt.Errorf("docker inspect %s: unexpected %q", container, out)
	}
	pid, _ = strconv.Atoi(f[1])
	return f[0] == "true", pid, nil
}

// startContainer starts a container and applies the current partition and
// netem to its new network namespace.
func (d *Docker) startContainer(ctx context.Context, n *dockerNode) error {
	if _, err := run(ctx, "", "docker", "start", n.container); err != nil {
		return fmt.Errorf("start %s: %w", n.spec.name, err)
	}
	running, pid, err := inspect(ctx, n.container)
	if err != nil {
		return err
	}
	if !running || pid == 0 {
		return fmt.Errorf("start %s: container exited at once (see its log)", n.spec.name)
	}
	n.mu.Lock()
	n.starts++
	n.pid = pid
	n.paused = false
	n.mu.Unlock()
	if _, err := d.applyNode(ctx, n); err != nil {
		return err
	}
	return nil
}

func (n *dockerNode) currentPID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pid
}

// nsenter runs a host tool inside the container's network namespace.
func (n *dockerNode) nsenter(ctx context.Context, stdin string, args ...string) error {
	pid := n.currentPID()
	if pid == 0 {
		return nil // not running: applied when it starts
	}
	_, err := run(ctx, stdin, "nsenter", append([]string{"-t", strconv.Itoa(pid), "-n", "--"}, args...)...)
	return err
}

// applyNode renders the current partition and slow network into the
// container's namespace (nothing while it is not running).
func (d *Docker) applyNode(ctx context.Context, n *dockerNode) (string, error) {
	d.linkMu.Lock()
	defer d.linkMu.Unlock()
	d.mu.Lock()
	st := linkState{netem: d.mu.netem[n.spec.name]}
	cut := d.mu.cut
	hasNetem := d.mu.hasNetem
	ipOf := map[string]string{}
	for _, o := range d.mu.nodes {
		ipOf[o.spec.name] = o.spec.host
	}
	d.mu.Unlock()
	for _, peer := range blockedPeers(cut)[n.spec.name] {
		st.blocked = append(st.blocked, ipOf[peer])
	}
	if n.currentPID() == 0 {
		return "applied when it starts", nil
	}
	applied, err := applyLink(ctx, n.nsenter, st, hasNetem)
	if err != nil {
		return "", fmt.Errorf("network of %s: %w", n.spec.name, err)
	}
	return applied, nil
}

// Kill sends SIGKILL and waits until the container has exited.
func (d *Docker) Kill(ctx context.Context, name string) error {
	n, err := d.node(name)
	if err != nil {
		return err
	}
	if !d.Running(name) {
		return nil
	}
	if _, err := run(ctx, "", "docker", "kill", "--signal", "KILL", n.container); err != nil {
		if running, _, ierr := inspect(ctx, n.container); ierr != nil || running {
			return fmt.Errorf("kill %s: %w", name, err)
		}
	}
	if err := d.waitExited(ctx, n); err != nil {
		return fmt.Errorf("kill %s: %w", name, err)
	}
	return nil
}

func (d *Docker) waitExited(ctx context.Context, n *dockerNode) error {
	ctx, cancel := context.WithTimeout(ctx, stopGrace+10*time.Second)
	defer cancel()
	if _, err := run(ctx, "", "docker", "wait", n.container); err != nil {
		return err
	}
	n.mu.Lock()
	n.pid, n.paused = 0, false
	n.mu.Unlock()
	return nil
}

// Stop sends SIGTERM (docker stop), SIGKILL after the grace period.
func (d *Docker) Stop(ctx context.Context, name string) error {
	n, err := d.node(name)
	if err != nil {
		return err
	}
	if !d.Running(name) {
		return nil
	}
	if d.Paused(name) {
		if err := d.Resume(ctx, name); err != nil {
			return err
		}
	}
	if _, err := run(ctx, "", "docker", "stop", "-t", strconv.Itoa(int(stopGrace.Seconds())), n.container); err != nil {
		return fmt.Errorf("stop %s: %w", name, err)
	}
	return d.waitExited(ctx, n)
}

// StartNode starts a stopped replica and returns once it listens.
func (d *Docker) StartNode(ctx context.Context, name string) error {
	n, err := d.node(name)
	if err != nil {
		return err
	}
	if err := d.startContainer(ctx, n); err != nil {
		return err
	}
	return waitListening(ctx, n.spec.api, func() bool { return true })
}

// Pause freezes the container (docker pause: the cgroup freezer, as SIGSTOP
// of every process).
func (d *Docker) Pause(ctx context.Context, name string) error {
	n, err := d.node(name)
	if err != nil {
		return err
	}
	if _, err := run(ctx, "", "docker", "pause", n.container); err != nil {
		return fmt.Errorf("pause %s: %w", name, err)
	}
	n.mu.Lock()
	n.paused = true
	n.mu.Unlock()
	return nil
}

// Resume thaws a paused container.
func (d *Docker) Resume(ctx context.Context, name string) error {
	n, err := d.node(name)
	if err != nil {
		return err
	}
	if !d.Paused(name) {
		return nil
	}
	if _, err := run(ctx, "", "docker", "unpause", n.container); err != nil {
		return fmt.Errorf("resume %s: %w", name, err)
	}
	n.mu.Lock()
	n.paused = false
	n.mu.Unlock()
	return nil
}

// Running reports whether the container runs (paused or not); it asks
// Docker, so a replica that crashed on its own is seen as stopped.
func (d *Docker) Running(name string) bool {
	n, err := d.node(name)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	running, pid, err := inspect(ctx, n.container)
	if err != nil {
		return n.currentPID() != 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !running {
		n.pid, n.paused = 0, false
	} else {
		n.pid = pid
	}
	return running
}

// Paused reports whether the container is frozen.
func (d *Docker) Paused(name string) bool {
	n, err := d.node(name)
	if err != nil {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.paused
}

// Incarnation counts the container's starts.
func (d *Docker) Incarnation(name string) int {
	n, err := d.node(name)
	if err != nil {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.starts
}

// SetPartition replaces the cut links in every running container.
func (d *Docker) SetPartition(ctx context.Context, cut []Pair) error {
	d.mu.Lock()
	d.mu.cut = append([]Pair(nil), cut...)
	nodes := append([]*dockerNode(nil), d.mu.nodes...)
	d.mu.Unlock()
	var errs []error
	for _, n := range nodes {
		_, err := d.applyNode(ctx, n)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// SetNetem slows one container's network.
func (d *Docker) SetNetem(ctx context.Context, name string, nm Netem) (string, error) {
	n, err := d.node(name)
	if err != nil {
		return "", err
	}
	d.mu.Lock()
	if d.mu.shapeErr != nil {
		d.mu.Unlock()
		return "", fmt.Errorf("%w: netem: %v", ErrUnavailable, d.mu.shapeErr)
	}
	if nm.IsZero() {
		delete(d.mu.netem, name)
	} else {
		d.mu.netem[name] = nm
	}
	d.mu.Unlock()
	return d.applyNode(ctx, n)
}

// CollectLogs writes `docker logs` of each container (all its runs) to dir.
func (d *Docker) CollectLogs(ctx context.Context, dir string) error {
	d.mu.Lock()
	nodes := append([]*dockerNode(nil), d.mu.nodes...)
	d.mu.Unlock()
	var errs []error
	for _, n := range nodes {
		out, err := run(ctx, "", "docker", "logs", n.container)
		if err != nil {
			errs = append(errs, err)
		}
		if werr := os.WriteFile(filepath.Join(dir, n.spec.name+".log"), []byte(out), 0o644); werr != nil {
			errs = append(errs, werr)
		}
	}
	return errors.Join(errs...)
}

// Close removes the containers and the network (the image is kept for the
// next run).
func (d *Docker) Close() error {
	d.mu.Lock()
	if d.mu.closed {
		d.mu.Unlock()
		return nil
	}
	d.mu.closed = true
	nodes := append([]*dockerNode(nil), d.mu.nodes...)
	network := d.mu.network
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, n := range nodes {
		wg.Go(func() {
			// Graceful first, so the last log lines show a clean stop.
			_ = d.Stop(ctx, n.spec.name)
			if _, err := run(ctx, "", "docker", "rm", "-f", n.container); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if network != "" {
		if _, err := run(ctx, "", "docker", "network", "rm", network); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cleanupDocker removes containers and networks labelled kuma-chaos=1.
func cleanupDocker(ctx context.Context) ([]string, error) {
	if len(MissingTools("docker")) > 0 {
		return nil, nil
	}
	var removed []string
	var errs []error
	if out, err := run(ctx, "", "docker", "ps", "-aq", "--filter", "label="+dockerLabel); err == nil {
		for _, id := range strings.Fields(out) {
			if _, err := run(ctx, "", "docker", "rm", "-f", id); err != nil {
				errs = append(errs, err)
			} else {
				removed = append(removed, "container "+id)
			}
		}
	}
	if out, err := run(ctx, "", "docker", "network", "ls", "-q", "--filter", "label="+dockerLabel); err == nil {
		for _, id := range strings.Fields(out) {
			if _, err := run(ctx, "", "docker", "network", "rm", id); err != nil {
				errs = append(errs, err)
			} else {
				removed = append(removed, "network "+id)
			}
		}
	}
	return removed, errors.Join(errs...)
}
