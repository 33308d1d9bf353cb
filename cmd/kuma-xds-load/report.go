package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// machine describes where the figures were measured.
type machine struct {
	CPU, Memory, Kernel, Go, KumaCP string
	NProc                           int
	Load                            string // load average when the run started (the machine may be shared)
}

func probeMachine(ctx context.Context, kumaCP string) machine {
	m := machine{CPU: "unknown", Memory: "unknown", Kernel: "unknown", NProc: runtime.NumCPU(),
		Go: runtime.Version() + " (kuma-xds-load)", KumaCP: "unknown (existing cluster)"}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == "MemTotal" {
				var kb int64
				if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err == nil {
					m.Memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				}
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(data)); len(f) >= 3 {
			m.Load = strings.Join(f[:3], " ")
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(data))
	}
	if kumaCP != "" {
		if out := firstLine(ctx, kumaCP, "version"); out != "" {
			m.KumaCP = out
		}
	}
	return m
}

func firstLine(ctx context.Context, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(line)
}

// commandLine is how this process was invoked, quoted for a shell.
func commandLine(args []string) string {
	name := args[0]
	if strings.Contains(name, "go-build") {
		name = "go run ./cmd/kuma-xds-load"
	} else if !strings.Contains(name, "/") {
		name = filepath.Base(name)
	}
	parts := []string{name}
	for _, a := range args[1:] {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,@+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func mode(delta, register bool) string {
	m := "SotW"
	if delta {
		m = "delta"
	}
	if register {
		m += ", self-registered"
	}
	return m
}

// modeKey names the mode in file names and section markers.
func modeKey(delta, register bool) string {
	k := "sotw"
	if delta {
		k = "delta"
	}
	if register {
		k += "-register"
	}
	return k
}

// section renders the markdown section for BENCHMARKS.md, in the style of
// kuma-bench's sections (command, date, machine, method, table).
func section(cmdline string, at time.Time, m machine, o loadOptions, own bool, levels []*levelResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## xDS propagation, %s (kuma-xds-load)\n\n", mode(o.Delta, o.Register))
	fmt.Fprintf(&b, "Command: `%s`  \nDate: %s\n\n", cmdline, at.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Machine:\n\n- CPU: %s, %d CPUs (`nproc`)\n- Memory: %s\n- Kernel: %s\n- Go: %s\n- kuma-cp: %s\n",
		m.CPU, m.NProc, m.Memory, m.Kernel, m.Go, m.KumaCP)
	if m.Load != "" {
		fmt.Fprintf(&b, "- Load average when the run started: %s (1, 5, 15 min)\n", m.Load)
	}
	b.WriteString("\n")
	cluster := "an existing cluster (`--api`)"
	if own {
		cluster = "a fresh cluster of built kuma-cp replicas per level, on this machine, with rebalancing off"
	}
	register := "created through the REST API before the proxies connect"
	if o.Register {
		register = "registered by the proxies themselves (node metadata `dataplane.resource`)"
	}
	fmt.Fprintf(&b, "Method: %s. N simulated proxies (dp/xdsclient, %s ADS, each resource unmarshalled and checked with "+
		"`ValidateAll()` before its ACK; byte-identical resources are decoded once per process) connect round robin to the "+
		"replicas, %d streams per gRPC connection. Their Dataplanes are %s; each has an inbound (one of %d services) and "+
		"outbounds to `%s` (%d Dataplanes) and two other services. Then %d changes, one at a time, through the API (round "+
		"robin over the replicas): a `%s` Dataplane is added, then removed again. *Propagation* runs from the API's answer "+
		"to the moment a proxy has accepted a load assignment of `%s` with (or without) that endpoint, one sample per proxy "+
		"and change; a proxy that had it before the answer counts 0. The load tool runs on the same machine as the replicas. "+
		"RSS and kuma_xds_proxies are read from each replica's /metrics after the changes; CPU is what each replica used "+
		"during the changes.\n\n",
		cluster, mode(o.Delta, false), o.StreamsPerConn, register, o.Services, targetService, o.Backends, o.Changes,
		targetService, targetService)
	var rows [][]string
	for _, l := range levels {
		var rss, perProxy, cpu, held []string
		for i, r := range l.Replicas1 {
			rss = append(rss, fmt.Sprintf("%.0f", r.RSSBytes/(1<<20)))
			if r.Proxies > 0 {
				perProxy = append(perProxy, fmt.Sprintf("%.0f", r.RSSBytes/r.Proxies/1000))
			} else {
				perProxy = append(perProxy, "-")
			}
			c := r.CPUSeconds
			if i < len(l.Replicas0) {
				c -= l.Replicas0[i].CPUSeconds
			}
			cpu = append(cpu, fmt.Sprintf("%.2f", c))
			held = append(held, fmt.Sprintf("%.0f", r.Proxies))
		}
		rows = append(rows, []string{fmt.Sprint(l.Proxies), fmt.Sprint(l.Replicas), fmt.Sprint(l.Changes),
			fmtDur(percentile(l.FromAck, 50)), fmtDur(percentile(l.FromAck, 99)), fmtDur(percentile(l.FromAck, 100)),
			fmtDur(percentile(l.Writes, 50)), fmt.Sprint(l.WriteRetries), fmt.Sprint(l.Missing), strings.Join(held, " / "),
			strings.Join(rss, " / "), strings.Join(perProxy, " / "), strings.Join(cpu, " / "), fmt.Sprintf("%.0f / %.2f", l.ToolRSS/(1<<20), l.ToolCPU),
			l.Setup.Round(100 * time.Millisecond).String()})
	}
	b.WriteString(table([]string{"proxies", "replicas", "changes", "p50", "p99", "max", "write p50", "write retries", "not converged",
		"proxies per replica", "RSS MiB per replica", "RSS kB per proxy", "CPU s per replica", "load tool RSS MiB / CPU s", "setup"}, rows))
	b.WriteString("\n*RSS kB per proxy* is a replica's RSS (1 kB = 1000 bytes) divided by the proxies it serves. " +
		"For reference: Kuma 2.9, single replica with the memory store, measured on this same 2-core " +
		"machine with the same method (issue 3): p50 0.49 s at 60 proxies, 1.08 s at 500, 4.0 s (max 4.7 s, 800 MB RSS) at 2,000; " +
		"Kuma 2.14, one replica, 2,000 proxies (issue 10): p50 5.4 s, max 6.8 s, 898 MB. " +
		"Targets (issue 10): one replica with 2,000 proxies, p99 under 200 ms and RSS under 150 MB (143 MiB); " +
		"10,000 proxies over 3 replicas, p99 under 1 s and under 100 kB of RSS per proxy.\n")
	return b.String()
}

func table(header []string, rows [][]string) string {
	var b strings.Builder
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	seps := make([]string, len(header))
	for i := range seps {
		seps[i] = "---"
	}
	b.WriteString("| " + strings.Join(seps, " | ") + " |\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return b.String()
}

const (
	markBegin = "<!-- kuma-xds-load:begin %s -->"
	markEnd   = "<!-- kuma-xds-load:end %s -->"
)

// writeSection replaces the section key in the file at path (between its
// markers), or appends it; the rest of the file is kept as it is.
func writeSection(path, key, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	begin, end := fmt.Sprintf(markBegin, key), fmt.Sprintf(markEnd, key)
	block := begin + "\n" + strings.TrimSpace(body) + "\n" + end + "\n"
	text := string(old)
	if i := strings.Index(text, begin); i >= 0 {
		if j := strings.Index(text[i:], end); j >= 0 {
			rest := strings.TrimPrefix(text[i+j+len(end):], "\n")
			text = text[:i] + block + rest
		} else {
			return fmt.Errorf("%s: %q has no matching %q", path, begin, end)
		}
	} else {
		if text != "" && !strings.HasSuffix(text, "\n") {
			text += "\n"
		}
		if text != "" {
			text += "\n"
		}
		text += block
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// summary is the human-readable result of one level.
func summary(l *levelResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d proxies over %d replicas (%s), %d changes, setup %s\n", l.Proxies, l.Replicas,
		mode(l.Delta, l.Register), l.Changes, l.Setup.Round(time.Millisecond))
	fmt.Fprintf(&b, "  propagation after the API's answer: p50 %s  p99 %s  max %s\n",
		fmtDur(percentile(l.FromAck, 50)), fmtDur(percentile(l.FromAck, 99)), fmtDur(percentile(l.FromAck, 100)))
	fmt.Fprintf(&b, "  propagation after the write was sent: p50 %s  p99 %s  max %s\n",
		fmtDur(percentile(l.FromSend, 50)), fmtDur(percentile(l.FromSend, 99)), fmtDur(percentile(l.FromSend, 100)))
	fmt.Fprintf(&b, "  API write: p50 %s  max %s  retried %d times (no quorum or no answer)\n",
		fmtDur(percentile(l.Writes, 50)), fmtDur(percentile(l.Writes, 100)), l.WriteRetries)
	if l.Missing > 0 {
		fmt.Fprintf(&b, "  NOT CONVERGED: %d (proxy, change) pairs; proxies: %s\n", l.Missing, strings.Join(l.NotConverged, ", "))
	} else {
		b.WriteString("  every proxy had every change\n")
	}
	fmt.Fprintf(&b, "  proxies' NACKs %d, reconnects %d; load tool: peak RSS %.0f MiB, CPU during changes %.2f s\n",
		l.NACKs, l.Reconnects, l.ToolRSS/(1<<20), l.ToolCPU)
	for i, r := range l.Replicas1 {
		cpu := r.CPUSeconds
		if i < len(l.Replicas0) {
			cpu -= l.Replicas0[i].CPUSeconds
		}
		fmt.Fprintf(&b, "  %-8s RSS %4.0f MiB  CPU during changes %.2f s  proxies %.0f\n", r.Name, r.RSSBytes/(1<<20), cpu, r.Proxies)
	}
	return b.String()
}
