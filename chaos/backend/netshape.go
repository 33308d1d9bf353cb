package backend

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// linkState is what the harness has done to one replica's network.
type linkState struct {
	blocked []string // peer addresses: all traffic to and from them is dropped
	netem   Netem
}

// netExec runs a host tool inside one replica's network namespace.
type netExec func(ctx context.Context, stdin string, args ...string) error

// filterRules is the iptables-restore input of a replica's filter table:
// loopback untouched, traffic with blocked peers dropped both ways, and
// random loss on everything else.
func filterRules(st linkState) string {
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	b.WriteString("-A INPUT -i lo -j ACCEPT\n-A OUTPUT -o lo -j ACCEPT\n")
	for _, ip := range st.blocked {
		fmt.Fprintf(&b, "-A INPUT -s %s/32 -j DROP\n-A OUTPUT -d %s/32 -j DROP\n", ip, ip)
	}
	if st.netem.Loss > 0 {
		p := strconv.FormatFloat(st.netem.Loss/100, 'f', 4, 64)
		fmt.Fprintf(&b, "-A INPUT -m statistic --mode random --probability %s -j DROP\n", p)
		fmt.Fprintf(&b, "-A OUTPUT -m statistic --mode random --probability %s -j DROP\n", p)
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// applyLink renders st into the namespace: the filter table, then the
// root qdisc of eth0 (netem when the kernel has it and a delay is asked
// for, else a tbf rate limit, else the default). It returns what was
// applied.
func applyLink(ctx context.Context, exec netExec, st linkState, hasNetem bool) (string, error) {
	if err := exec(ctx, filterRules(st), "iptables-restore", "-w"); err != nil {
		return "", err
	}
	n := st.netem
	var applied []string
	if n.Loss > 0 {
		applied = append(applied, fmt.Sprintf("loss %.1f%% each way (iptables)", n.Loss))
	}
	switch {
	case hasNetem && (n.Delay > 0 || n.Rate > 0):
		args := []string{"tc", "qdisc", "replace", "dev", "eth0", "root", "netem"}
		if n.Delay > 0 {
			args = append(args, "delay", fmt.Sprintf("%dms", n.Delay.Milliseconds()))
			if n.Jitter > 0 {
				args = append(args, fmt.Sprintf("%dms", n.Jitter.Milliseconds()), "distribution", "normal")
			}
			applied = append(applied, fmt.Sprintf("delay %s±%s (netem)", n.Delay, n.Jitter))
		}
		if n.Rate > 0 {
			args = append(args, "rate", fmt.Sprintf("%dkbit", n.Rate))
			applied = append(applied, fmt.Sprintf("rate %dkbit (netem)", n.Rate))
		}
		if err := exec(ctx, "", args...); err != nil {
			return "", err
		}
	case n.Rate > 0:
		if err := exec(ctx, "", "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf",
			"rate", fmt.Sprintf("%dkbit", n.Rate), "burst", "32kb", "latency", "400ms"); err != nil {
			return "", err
		}
		applied = append(applied, fmt.Sprintf("rate %dkbit, queue ≤400ms (tbf)", n.Rate))
		if n.Delay > 0 {
			applied = append(applied, "no fixed delay: the kernel has no sch_netem")
		}
	default:
		if err := exec(ctx, "", "tc", "qdisc", "del", "dev", "eth0", "root"); err != nil && !noQdisc(err) {
			return "", err
		}
		if n.Delay > 0 {
			applied = append(applied, "no delay: the kernel has no sch_netem")
		}
	}
	if len(applied) == 0 {
		return "none", nil
	}
	return strings.Join(applied, ", "), nil
}

// probeShaping reports whether netem works and, if not, whether the
// fallback (tbf and the statistic match) does.
func probeShaping(ctx context.Context, exec netExec) (hasNetem bool, fallbackErr error) {
	if err := exec(ctx, "", "tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", "1ms"); err == nil {
		_ = exec(ctx, "", "tc", "qdisc", "del", "dev", "eth0", "root")
		return true, nil
	}
	if err := exec(ctx, "", "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", "1mbit", "burst", "32kb", "latency", "400ms"); err != nil {
		return false, err
	}
	if err := exec(ctx, "", "tc", "qdisc", "del", "dev", "eth0", "root"); err != nil && !noQdisc(err) {
		return false, err
	}
	if err := exec(ctx, filterRules(linkState{netem: Netem{Loss: 1}}), "iptables-restore", "-w"); err != nil {
		return false, err
	}
	return false, exec(ctx, filterRules(linkState{}), "iptables-restore", "-w")
}

// noQdisc reports tc's complaint about deleting a root qdisc that is the default.
func noQdisc(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "No such file") || strings.Contains(msg, "handle of zero") || strings.Contains(msg, "Invalid handle")
}
