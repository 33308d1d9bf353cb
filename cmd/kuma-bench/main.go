package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// config is every flag of kuma-bench.
type config struct {
	binDir     string
	out        string
	quick      bool
	duration   time.Duration // per concurrency level (writes)
	rounds     int           // failover
	count      int           // snapshot
	dpDuration time.Duration // dataplane: per measure and path
	etcdBin    string
	keepDirs   bool
	systems    map[string]bool // writes: which systems to drive

	cmdline string
	log     *slog.Logger
	stderr  io.Writer
}

const usage = `Usage: kuma-bench [flags] writes|failover|snapshot|dataplane|all

  writes    write throughput and latency of 3 kuma-cp replicas vs 3 etcd members
  failover  unavailability of writes when the kuma-cp leader is SIGKILLed
  snapshot  time and peak RSS of snapshot and restore of 100,000 Dataplanes
  dataplane kuma-dp's built-in proxy (two hops) vs a direct connection:
            throughput, added latency, requests/s, RSS and CPU

xDS propagation is measured by kuma-xds-load (make bench-xds).
  all       every benchmark above; the --out file gets one section each

Flags (before or after the subcommand):
`

func main() {
	if len(os.Args) > 1 && (os.Args[1] == cmdSnapshotFill || os.Args[1] == cmdSnapshotRestore) {
		os.Exit(runSnapshotChild(os.Args[1], os.Args[2:], os.Stdout))
	}
	if len(os.Args) > 1 && os.Args[1] == cmdDPApp {
		os.Exit(runDPApp(os.Args[2:], os.Stdout))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "kuma-bench:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// parseArgs reads flags placed before and after the subcommand.
func parseArgs(args []string, stderr io.Writer) (*config, string, error) {
	cfg := &config{cmdline: commandLine(args)}
	fs := flag.NewFlagSet("kuma-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	fs.StringVar(&cfg.binDir, "bin-dir", "bin", "directory holding the kuma-cp binary")
	fs.StringVar(&cfg.out, "out", "BENCHMARKS.md", "markdown file the results are written to")
	fs.BoolVar(&cfg.quick, "quick", false, "short smoke run: 2 s per level, 3 failover rounds, 10,000 Dataplanes, 1 s per dataplane measure")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "writes: how long each concurrency level runs")
	fs.IntVar(&cfg.rounds, "rounds", 10, "failover: leader kills (at least 10 unless --quick)")
	fs.IntVar(&cfg.count, "count", 100_000, "snapshot: Dataplanes in the state")
	fs.DurationVar(&cfg.dpDuration, "dp-duration", 5*time.Second, "dataplane: how long each measure runs, direct and proxied each")
	fs.StringVar(&cfg.etcdBin, "etcd", "etcd", "etcd binary (Debian package etcd-server)")
	fs.BoolVar(&cfg.keepDirs, "keep", false, "keep data dirs and logs in the temporary directory")
	systems := fs.String("systems", "kuma-cp,etcd", "writes: comma-separated systems to drive (kuma-cp, etcd)")

	if err := fs.Parse(args[1:]); err != nil {
		return nil, "", usageError{err.Error()}
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return nil, "", usageError{"missing subcommand"}
	}
	sub := fs.Arg(0)
	if err := fs.Parse(fs.Args()[1:]); err != nil {
		return nil, "", usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, "", usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if cfg.quick {
		if !set["duration"] {
			cfg.duration = 2 * time.Second
		}
		if !set["rounds"] {
			cfg.rounds = 3
		}
		if !set["count"] {
			cfg.count = 10_000
		}
		if !set["dp-duration"] {
			cfg.dpDuration = time.Second
		}
	}
	switch {
	case cfg.duration <= 0 || cfg.duration > time.Hour:
		return nil, "", usageError{fmt.Sprintf("--duration must be in (0, 1h], got %s", cfg.duration)}
	case cfg.rounds < 1 || cfg.rounds > 1000:
		return nil, "", usageError{fmt.Sprintf("--rounds must be in [1, 1000], got %d", cfg.rounds)}
	case !cfg.quick && cfg.rounds < 10:
		return nil, "", usageError{fmt.Sprintf("--rounds must be at least 10 (or use --quick), got %d", cfg.rounds)}
	case cfg.dpDuration <= 0 || cfg.dpDuration > 10*time.Minute:
		return nil, "", usageError{fmt.Sprintf("--dp-duration must be in (0, 10m], got %s", cfg.dpDuration)}
	case cfg.count < 1 || cfg.count > 10_000_000:
		return nil, "", usageError{fmt.Sprintf("--count must be in [1, 10000000], got %d", cfg.count)}
	case cfg.out == "":
		return nil, "", usageError{"--out must not be empty"}
	}
	cfg.systems = map[string]bool{}
	for _, sys := range strings.Split(*systems, ",") {
		switch sys = strings.TrimSpace(sys); sys {
		case "kuma-cp", "etcd":
			cfg.systems[sys] = true
		default:
			return nil, "", usageError{fmt.Sprintf("--systems: unknown system %q (want kuma-cp, etcd)", sys)}
		}
	}
	return cfg, sub, nil
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	cfg, sub, err := parseArgs(args, stderr)
	if err != nil {
		return err
	}
	cfg.stderr = stderr
	cfg.log = slog.New(slog.NewTextHandler(stderr, nil)).With("component", "kuma-bench")
	benches := map[string]func(context.Context, *config) (string, error){
		"writes":    benchWrites,
		"failover":  benchFailover,
		"snapshot":  benchSnapshot,
		"dataplane": benchDataplane,
	}
	var names []string
	switch sub {
	case "all":
		names = sectionOrder
	case "writes", "failover", "snapshot", "dataplane":
		names = []string{sub}
	default:
		return usageError{fmt.Sprintf("unknown subcommand %q (want writes, failover, snapshot, dataplane or all)", sub)}
	}
	if sub != "snapshot" {
		abs, err := filepath.Abs(cfg.binDir)
		if err != nil {
			return fmt.Errorf("--bin-dir: %w", err)
		}
		cfg.binDir = abs
	}
	if (sub == "writes" || sub == "all") && cfg.systems["etcd"] {
		path, err := exec.LookPath(cfg.etcdBin)
		if err != nil {
			return fmt.Errorf("--etcd %s: %w (install the Debian package etcd-server)", cfg.etcdBin, err)
		}
		cfg.etcdBin = path
	} else {
		cfg.etcdBin = ""
	}
	for _, name := range names {
		start := time.Now()
		cfg.log.Info("benchmark starting", "name", name)
		body, err := benches[name](ctx, cfg)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := updateReport(cfg.out, name, body); err != nil {
			return err
		}
		cfg.log.Info("benchmark done", "name", name, "took", time.Since(start).Round(time.Millisecond), "report", cfg.out)
	}
	return nil
}

// logf adapts slog to testcluster's Logf. Multi-line messages (dumped
// logs) go to stderr as they are, to stay readable.
func (c *config) logf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if strings.Contains(msg, "\n") {
		fmt.Fprintln(c.stderr, msg)
		return
	}
	c.log.Info(msg)
}

// tempDir makes the directory a benchmark's processes keep their data in;
// the returned cleanup removes it unless --keep.
func (c *config) tempDir(name string) (string, func(), error) {
	dir, err := os.MkdirTemp("", "kuma-bench-"+name+"-")
	if err != nil {
		return "", nil, err
	}
	return dir, func() {
		if c.keepDirs {
			c.log.Info("kept data dirs and logs", "dir", dir)
			return
		}
		os.RemoveAll(dir)
	}, nil
}
