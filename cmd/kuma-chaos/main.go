// Command kuma-chaos is the chaos harness of kuma-ha: it starts a cluster of
// built kuma-cp replicas (processes or Docker containers), runs clients
// against the REST API while it kills, pauses, restarts and partitions
// replicas, heals everything and checks the history. It exits 0 when every
// checker passes, 1 when one fails, 2 when the run could not be carried out.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kuma-ha/kuma-ha/chaos"
	"github.com/kuma-ha/kuma-ha/chaos/backend"
	"github.com/kuma-ha/kuma-ha/chaos/nemesis"
	"github.com/kuma-ha/kuma-ha/chaos/workload"
)

// exitError carries an exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := newRootCmd(os.Stdout, os.Stderr)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "kuma-chaos:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(2)
	}
}

type flags struct {
	backend       string
	network       string
	replicas      int
	duration      time.Duration
	seed          uint64
	nemesis       string
	out           string
	binDir        string
	clients       int
	keys          int
	opsPerKey     int
	maxOps        int
	think         time.Duration
	opTimeout     time.Duration
	recoveryBound time.Duration
	checkTimeout  time.Duration
	minFaults     int
	cpArgs        []string
	minGap        time.Duration
	maxGap        time.Duration
	minHold       time.Duration
	maxHold       time.Duration
	keepData      bool
	logLevel      string
	proxies       int
	proxyInterval time.Duration
	proxyTimeout  time.Duration
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	f := &flags{}
	cmd := &cobra.Command{
		Use:   "kuma-chaos",
		Short: "Kill, pause, restart and partition kuma-cp replicas under load, and check nothing acknowledged is lost",
		Long: `kuma-chaos starts 3 or 5 kuma-cp replicas of the built binaries, runs
concurrent REST clients (reads, consistent reads, writes, If-Match writes,
deletes) on random replicas, and TCP traffic through kuma-dp proxies, while
nemeses inject faults on a seeded schedule, heals everything and checks the
history: linearizability (porcupine), no lost acknowledged write, no stale
read, identical state on every replica, one leader and full health within a
bound, and every proxy request answered while only the control plane was hit.

The run directory (--out) gets history.jsonl, each replica's log, verdicts
and a self-contained report.html. Exit status: 0 pass, 1 a checker failed,
2 the run could not be carried out.

Nemeses (--nemesis, comma-separated; groups: all, process, partition, smoke):
  kill, kill-leader, pause, pause-leader, restart, rolling-restart,
  partition-leader, partition-halves, partition-bridge, netem, clock-skew`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runChaos(cmd.Context(), f, cmd.Flags().Changed("seed"), stdout, stderr)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.backend, "backend", chaos.BackendProcess, "process (child processes) or docker (containers built FROM scratch)")
	fs.StringVar(&f.network, "network", backend.NetAuto, "process backend: auto (namespaces when root, else loopback), netns or loopback")
	fs.IntVar(&f.replicas, "replicas", 3, "replicas: 3 or 5")
	fs.DurationVar(&f.duration, "duration", 60*time.Second, "how long the workload and the nemeses run, before healing")
	fs.Uint64Var(&f.seed, "seed", 0, "seed of the fault schedule and the clients (default: from the clock, printed)")
	fs.StringVar(&f.nemesis, "nemesis", "all", "nemeses to mix, comma-separated")
	fs.StringVar(&f.out, "out", "", "run directory (default chaos-out/BACKEND-SEED)")
	fs.StringVar(&f.binDir, "bin-dir", "bin", "directory holding the kuma-cp binary (make build)")
	fs.IntVar(&f.clients, "clients", 8, "concurrent REST clients")
	fs.IntVar(&f.keys, "keys", 5, "keys in use at a time")
	fs.IntVar(&f.opsPerKey, "ops-per-key", 250, "operations after which a key is retired for a fresh one")
	fs.IntVar(&f.maxOps, "max-ops", 200000, "bound on the operations of the run")
	fs.DurationVar(&f.think, "think", 30*time.Millisecond, "each client's mean pause between operations")
	fs.DurationVar(&f.opTimeout, "op-timeout", 3*time.Second, "timeout of one operation (a write that times out has an unknown outcome)")
	fs.DurationVar(&f.recoveryBound, "recovery-bound", 30*time.Second, "after healing, one leader and every replica healthy within this")
	fs.DurationVar(&f.checkTimeout, "check-timeout", 2*time.Minute, "bound of the linearizability search per key")
	fs.IntVar(&f.minFaults, "min-faults", 0, "fail the run unless at least this many faults were carried out, none with an error (0: not checked)")
	fs.StringSliceVar(&f.cpArgs, "cp-arg", []string{"--raft-snapshot-threshold=512"}, "extra argument for every kuma-cp run (repeatable); the default makes snapshots frequent")
	fs.DurationVar(&f.minGap, "min-gap", nemesis.DefaultTiming.MinGap, "shortest quiet time between faults")
	fs.DurationVar(&f.maxGap, "max-gap", nemesis.DefaultTiming.MaxGap, "longest quiet time between faults")
	fs.DurationVar(&f.minHold, "min-hold", nemesis.DefaultTiming.MinHold, "shortest fault")
	fs.DurationVar(&f.maxHold, "max-hold", nemesis.DefaultTiming.MaxHold, "longest fault")
	fs.IntVar(&f.proxies, "proxies", 2, "pairs of kuma-dp proxies (callee in front of an echo app, caller with an outbound to it) carrying TCP traffic during the run; 0 for none (needs kuma-dp in --bin-dir)")
	fs.DurationVar(&f.proxyInterval, "proxy-interval", 40*time.Millisecond, "each caller's mean pause between proxy requests")
	fs.DurationVar(&f.proxyTimeout, "proxy-timeout", 2*time.Second, "timeout of one proxy request (connect, write, echo)")
	fs.BoolVar(&f.keepData, "keep-data", false, "keep the replicas' data dirs (process backend) in the run directory")
	fs.StringVar(&f.logLevel, "log-level", "info", "harness log level (the log is OUT/kuma-chaos.log): debug, info, warn, error")

	var checkTimeout time.Duration
	checkCmd := &cobra.Command{
		Use:   "check RUN-DIR",
		Short: "Run the checkers again on a recorded run and rewrite its verdicts, summary.md and report.html",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := chaos.Recheck(args[0], checkTimeout)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			for _, v := range res.Verdicts {
				fmt.Fprintln(stdout, v.String())
			}
			fmt.Fprintln(stdout, res.Summary)
			if !res.Passed {
				return &exitError{code: 1, err: errors.New("a checker failed")}
			}
			return nil
		},
	}
	checkCmd.Flags().DurationVar(&checkTimeout, "check-timeout", 2*time.Minute, "bound of the linearizability search per key")
	cmd.AddCommand(checkCmd)
	cmd.AddCommand(&cobra.Command{
		Use:   "cleanup",
		Short: "Remove namespaces, bridges, containers and networks left by runs that were killed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			removed, err := backend.CleanupLeftovers(cmd.Context())
			for _, r := range removed {
				fmt.Fprintln(stdout, "removed", r)
			}
			if len(removed) == 0 && err == nil {
				fmt.Fprintln(stdout, "nothing to clean up")
			}
			return err
		},
	})
	return cmd
}

func runChaos(ctx context.Context, f *flags, seedSet bool, stdout, stderr io.Writer) error {
	kinds, err := nemesis.ParseKinds(f.nemesis)
	if err != nil {
		return err
	}
	if !seedSet {
		f.seed = uint64(time.Now().UnixNano() % 1_000_000)
	}
	if f.out == "" {
		f.out = filepath.Join("chaos-out", fmt.Sprintf("%s-%d", f.backend, f.seed))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	if f.minGap <= 0 || f.maxGap < f.minGap {
		return fmt.Errorf("--min-gap/--max-gap: want 0 < min <= max, got %s and %s", f.minGap, f.maxGap)
	}
	if f.minHold <= 0 || f.maxHold < f.minHold {
		return fmt.Errorf("--min-hold/--max-hold: want 0 < min <= max, got %s and %s", f.minHold, f.maxHold)
	}
	if f.clients < 1 || f.clients > 64 {
		return fmt.Errorf("--clients: want 1-64, got %d", f.clients)
	}
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	logFile, err := os.Create(filepath.Join(f.out, "kuma-chaos.log"))
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	defer logFile.Close()
	logger := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: level}))
	cfg := chaos.Config{
		Backend:   f.backend,
		Network:   f.network,
		Replicas:  f.replicas,
		Duration:  f.duration,
		Seed:      f.seed,
		Nemeses:   kinds,
		Timing:    nemesis.Timing{MinGap: f.minGap, MaxGap: f.maxGap, MinHold: f.minHold, MaxHold: f.maxHold},
		OutDir:    f.out,
		BinDir:    f.binDir,
		ExtraArgs: normalizeArgs(f.cpArgs),
		Workload: workload.RESTOptions{Clients: f.clients, Keys: f.keys, OpsPerKey: f.opsPerKey, MaxOps: f.maxOps,
			Think: f.think, Timeout: f.opTimeout},
		Proxies:       f.proxies,
		ProxyTraffic:  workload.ProxyOptions{Interval: f.proxyInterval, Timeout: f.proxyTimeout},
		RecoveryBound: f.recoveryBound,
		CheckTimeout:  f.checkTimeout,
		MinFaults:     f.minFaults,
		KeepData:      f.keepData,
		Progress:      stderr,
		Logger:        logger,
	}
	fmt.Fprintf(stderr, "kuma-chaos: seed %d, run directory %s\n", f.seed, f.out)
	res, err := chaos.Run(ctx, cfg)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	for _, v := range res.Verdicts {
		fmt.Fprintln(stdout, v.String())
	}
	fmt.Fprintln(stdout, res.Summary)
	fmt.Fprintln(stdout, "report:", filepath.Join(res.Dir, "report.html"))
	if !res.Passed {
		return &exitError{code: 1, err: errors.New("a checker failed; see the report")}
	}
	return nil
}

// normalizeArgs splits "--flag=value" pairs given without "=" handling
// surprises: each element is passed as one argument.
func normalizeArgs(args []string) []string {
	var out []string
	for _, a := range args {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}
