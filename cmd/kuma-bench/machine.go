package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// machine describes where a figure was measured.
type machine struct {
	CPU, Memory, Kernel, Go, Etcd, KumaCP string
	NProc                                 int
}

func probeMachine(ctx context.Context, cfg *config) machine {
	m := machine{
		CPU:    "unknown",
		Memory: "unknown",
		Kernel: "unknown",
		NProc:  runtime.NumCPU(), // honours the affinity mask, as nproc does
		Go:     runtime.Version() + " (kuma-bench)",
		Etcd:   "not used",
		KumaCP: "not used",
	}
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
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = "Linux " + strings.TrimSpace(string(data))
	}
	if out := firstLine(ctx, "go", "version"); out != "" {
		m.Go = out
	}
	if cfg.etcdBin != "" {
		if out := firstLine(ctx, cfg.etcdBin, "--version"); out != "" {
			m.Etcd = out
		}
	}
	if cfg.binDir != "" {
		if out := firstLine(ctx, filepath.Join(cfg.binDir, "kuma-cp"), "version"); out != "" {
			m.KumaCP = out
		}
	}
	return m
}

// firstLine runs a short command and returns the first line of its output.
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

func (m machine) markdown() string {
	return fmt.Sprintf("- CPU: %s, %d CPUs (`nproc`)\n- Memory: %s\n- Kernel: %s\n- Go: %s\n- etcd: %s\n- kuma-cp: %s\n",
		m.CPU, m.NProc, m.Memory, m.Kernel, m.Go, m.Etcd, m.KumaCP)
}

// provenance is the block every section starts with.
func provenance(cmdline string, at time.Time, m machine, quick bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Command: `%s`  \nDate: %s\n\n", cmdline, at.UTC().Format("2006-01-02 15:04 MST"))
	if quick {
		b.WriteString("**Quick smoke run (--quick): shortened, not representative.**\n\n")
	}
	b.WriteString("Machine:\n\n" + m.markdown())
	return b.String()
}

// commandLine is how this process was invoked, quoted for a shell.
func commandLine(args []string) string {
	name := args[0]
	if strings.Contains(name, "go-build") {
		name = "go run ./cmd/kuma-bench"
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
