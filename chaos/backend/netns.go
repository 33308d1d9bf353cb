package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// netnsNet puts each replica in its own network namespace: a veth pair
// links the namespace's eth0 to a bridge in the host namespace, which holds
// the subnet's .1 so the harness reaches every replica. Partitions are
// iptables filter rules inside the namespaces, so they cut every kind of
// traffic (Raft, forwarding, gossip over TCP and UDP, xDS) between the chosen
// replicas while the harness still reaches all of them.
type netnsNet struct {
	id       string // short, unique per harness process
	prefix   string // "10.231.X"
	bridge   string
	spaces   []string
	hostVeth []string
	// fwdRules are host FORWARD rules added so that bridged traffic passes
	// a FORWARD policy of DROP (Docker sets one, and br_netfilter sends
	// bridged packets through it).
	fwdRules [][]string
	hasNetem bool  // the kernel has sch_netem (delay); else tbf and iptables loss
	shapeErr error // why no slow network can be made at all, if so
	log      *slog.Logger

	mu    sync.Mutex  // serializes rule changes; guards links
	links []linkState // per namespace
}

const netnsPrefix = "kchaos-"

func newNetnsNet(ctx context.Context, n int, log *slog.Logger) (*netnsNet, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("not running as root")
	}
	if missing := MissingTools("ip", "iptables", "iptables-restore", "tc"); len(missing) > 0 {
		return nil, fmt.Errorf("missing tools: %s (apt-get install iproute2 iptables)", strings.Join(missing, ", "))
	}
	id := fmt.Sprintf("%04x", os.Getpid()&0xffff)
	prefix, err := freeSubnet(ctx, "10.231", os.Getpid())
	if err != nil {
		return nil, err
	}
	nn := &netnsNet{id: id, prefix: prefix, bridge: "kcb" + id, log: log}
	if err := nn.setup(ctx, n); err != nil {
		if cerr := nn.close(); cerr != nil {
			log.Warn("cleaning up a failed namespace setup", "err", cerr)
		}
		return nil, err
	}
	return nn, nil
}

// freeSubnet returns "A.B.X" for the first X (starting from a value derived
// from seed) whose /24 no host route uses.
func freeSubnet(ctx context.Context, ab string, seed int) (string, error) {
	routes, err := run(ctx, "", "ip", "-4", "route", "show")
	if err != nil {
		return "", err
	}
	for i := range 200 {
		x := 20 + (seed+i)%200
		p := fmt.Sprintf("%s.%d", ab, x)
		if !strings.Contains(routes, p+".") {
			return p, nil
		}
	}
	return "", fmt.Errorf("no free /24 in %s.0.0/16", ab)
}

func (nn *netnsNet) ip(i int) string { return fmt.Sprintf("%s.%d", nn.prefix, 11+i) }

func (nn *netnsNet) setup(ctx context.Context, n int) error {
	steps := [][]string{
		{"ip", "link", "add", nn.bridge, "type", "bridge"},
		{"ip", "addr", "add", nn.prefix + ".1/24", "dev", nn.bridge},
		{"ip", "link", "set", nn.bridge, "up"},
	}
	for _, s := range steps {
		if _, err := run(ctx, "", s[0], s[1:]...); err != nil {
			return err
		}
	}
	for _, dir := range []string{"-i", "-o"} {
		rule := []string{"FORWARD", dir, nn.bridge, "-j", "ACCEPT"}
		if _, err := run(ctx, "", "iptables", append([]string{"-w", "-I"}, rule...)...); err != nil {
			return err
		}
		nn.fwdRules = append(nn.fwdRules, rule)
	}
	for i := range n {
		ns := fmt.Sprintf("%s%s-%d", netnsPrefix, nn.id, i+1)
		veth := fmt.Sprintf("kcv%s-%d", nn.id, i+1)
		if _, err := run(ctx, "", "ip", "netns", "add", ns); err != nil {
			return err
		}
		nn.spaces = append(nn.spaces, ns)
		steps := [][]string{
			{"ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"ip", "link", "set", veth, "master", nn.bridge, "up"},
			{"ip", "-n", ns, "addr", "add", nn.ip(i) + "/24", "dev", "eth0"},
			{"ip", "-n", ns, "link", "set", "eth0", "up"},
			{"ip", "-n", ns, "link", "set", "lo", "up"},
		}
		for j, s := range steps {
			if _, err := run(ctx, "", s[0], s[1:]...); err != nil {
				return err
			}
			if j == 0 {
				nn.hostVeth = append(nn.hostVeth, veth)
			}
		}
		nn.links = append(nn.links, linkState{})
		if _, err := nn.apply(ctx, i); err != nil {
			return err
		}
	}
	// A kernel without sch_netem still allows partitions and a slow network
	// made of a rate limit and random loss.
	nn.hasNetem, nn.shapeErr = probeShaping(ctx, nn.exec(0))
	// The harness must reach every replica through the bridge.
	for i := range n {
		if _, err := run(ctx, "", "ip", "netns", "exec", nn.spaces[i], "ip", "route", "get", nn.prefix+".1"); err != nil {
			return err
		}
	}
	nn.log.Info("network namespaces ready", "bridge", nn.bridge, "subnet", nn.prefix+".0/24", "namespaces", strings.Join(nn.spaces, ","))
	return nil
}

// wrap runs argv inside namespace i (ip netns exec execs it: the pid is the
// replica's own).
func (nn *netnsNet) wrap(i int, argv []string) []string {
	return append([]string{"ip", "netns", "exec", nn.spaces[i]}, argv...)
}

// exec runs a tool inside namespace i.
func (nn *netnsNet) exec(i int) netExec {
	return func(ctx context.Context, stdin string, args ...string) error {
		_, err := run(ctx, stdin, "ip", append([]string{"netns", "exec", nn.spaces[i]}, args...)...)
		return err
	}
}

// apply renders namespace i's link state.
func (nn *netnsNet) apply(ctx context.Context, i int) (string, error) {
	return applyLink(ctx, nn.exec(i), nn.links[i], nn.hasNetem)
}

// setBlocked replaces the peers namespace i must not reach.
func (nn *netnsNet) setBlocked(ctx context.Context, i int, blocked []string) error {
	nn.mu.Lock()
	defer nn.mu.Unlock()
	nn.links[i].blocked = blocked
	_, err := nn.apply(ctx, i)
	return err
}

// setNetem slows namespace i's network.
func (nn *netnsNet) setNetem(ctx context.Context, i int, n Netem) (string, error) {
	nn.mu.Lock()
	defer nn.mu.Unlock()
	nn.links[i].netem = n
	return nn.apply(ctx, i)
}

// close removes the namespaces (their veths go with them), the bridge and
// the FORWARD rules.
func (nn *netnsNet) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for _, ns := range nn.spaces {
		if _, err := run(ctx, "", "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, v := range nn.hostVeth {
		// Normally gone with its peer's namespace.
		_, _ = run(ctx, "", "ip", "link", "del", v)
	}
	if _, err := run(ctx, "", "ip", "link", "del", nn.bridge); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
		errs = append(errs, err)
	}
	for _, r := range nn.fwdRules {
		if _, err := run(ctx, "", "iptables", append([]string{"-w", "-D"}, r...)...); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// CleanupLeftovers removes namespaces, bridges and containers that runs
// killed before cleaning up left behind (names starting with kchaos-/kcb).
// It returns what it removed.
func CleanupLeftovers(ctx context.Context) ([]string, error) {
	var removed []string
	var errs []error
	if out, err := run(ctx, "", "ip", "netns", "list"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) > 0 && strings.HasPrefix(f[0], netnsPrefix) {
				if _, err := run(ctx, "", "ip", "netns", "del", f[0]); err != nil {
					errs = append(errs, err)
				} else {
					removed = append(removed, "netns "+f[0])
				}
			}
		}
	}
	if out, err := run(ctx, "", "ip", "-o", "link", "show", "type", "bridge"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name := strings.TrimSuffix(f[1], ":")
			if !strings.HasPrefix(name, "kcb") {
				continue
			}
			if _, err := run(ctx, "", "ip", "link", "del", name); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, "bridge "+name)
			for _, dir := range []string{"-i", "-o"} {
				for {
					if _, err := run(ctx, "", "iptables", "-w", "-D", "FORWARD", dir, name, "-j", "ACCEPT"); err != nil {
						break
					}
				}
			}
		}
	}
	r, err := cleanupDocker(ctx)
	removed = append(removed, r...)
	if err != nil {
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}
