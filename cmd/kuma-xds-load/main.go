// Command kuma-xds-load is the xDS load tool: it simulates N proxies (ADS
// clients that validate and ACK like Envoy, from dp/xdsclient) spread round
// robin over the replicas of a cluster, changes the state through the REST
// API, and reports propagation latency (write answered by the API -> every
// proxy has the change) as p50/p99/max, with each replica's RSS and CPU time.
//
// It targets an existing cluster (--api) or starts its own from built
// binaries (--bin-dir), a fresh one per proxy count.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kuma-ha/kuma-ha/cmd/internal/testcluster"
	"github.com/kuma-ha/kuma-ha/cmd/internal/version"
)

type config struct {
	apiURLs  []string
	binDir   string
	replicas int
	proxies  []int
	load     loadOptions
	out      string
	rebal    bool
	keep     bool
	profile  string        // directory for CPU profiles of the change phase
	profSecs time.Duration // how long the replicas are profiled
	logLevel slog.Level
	cmdline  string
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usageText = `Usage: kuma-xds-load [flags]

Simulates N xDS proxies over the replicas of a kuma-cp cluster, changes the
state through the REST API and reports how long each change takes to reach
every proxy (p50/p99/max), with each replica's RSS and CPU time.

  kuma-xds-load --bin-dir bin --proxies 100,1000 --out BENCHMARKS.md
  kuma-xds-load --api http://127.0.0.1:5681 --proxies 500 --delta

Flags:
`

func parseArgs(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{cmdline: commandLine(args)}
	fs := flag.NewFlagSet("kuma-xds-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usageText); fs.PrintDefaults() }
	api := fs.String("api", "", "comma-separated API URLs of an existing cluster (default: start a fresh cluster per proxy count from --bin-dir)")
	fs.StringVar(&cfg.binDir, "bin-dir", "bin", "directory holding the kuma-cp binary (without --api)")
	fs.IntVar(&cfg.replicas, "replicas", 3, "replicas of the cluster started without --api")
	proxies := fs.String("proxies", "100", "comma-separated proxy counts, one level each")
	fs.IntVar(&cfg.load.Changes, "changes", 20, "changes measured per level (a backend endpoint added, then removed, ...)")
	fs.BoolVar(&cfg.load.Delta, "delta", false, "incremental xDS instead of state of the world")
	fs.BoolVar(&cfg.load.Register, "register", false, "proxies register their Dataplane through node metadata instead of the API")
	fs.IntVar(&cfg.load.StreamsPerConn, "streams-per-conn", 50, "ADS streams per gRPC connection")
	fs.IntVar(&cfg.load.Backends, "backends", 20, "Dataplanes providing the backend service every proxy calls")
	fs.IntVar(&cfg.load.Services, "services", 50, "distinct services of the proxies")
	fs.IntVar(&cfg.load.Concurrency, "concurrency", 32, "parallel API writes during setup")
	fs.DurationVar(&cfg.load.Timeout, "timeout", 30*time.Second, "how long a change may take to reach every proxy")
	fs.DurationVar(&cfg.load.SetupTimeout, "setup-timeout", 5*time.Minute, "how long every proxy may take to get its initial config")
	fs.StringVar(&cfg.out, "out", "", "markdown file to write the results to (its kuma-xds-load section for this mode and these counts is replaced, or appended)")
	fs.BoolVar(&cfg.rebal, "rebalance", false, "keep the replicas' proxy rebalancing on (started cluster only; off by default so that it does not move proxies during the measurement)")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the created Dataplanes in an existing cluster (and the data dirs of a started one)")
	fs.StringVar(&cfg.profile, "profile", "", "write CPU profiles of the change phase to this directory, the load tool's and each replica's, and each replica's heap profile and metrics after the changes (a started cluster runs with --debug-pprof; an existing one must)")
	fs.DurationVar(&cfg.profSecs, "profile-seconds", 15*time.Second, "how long the replicas are profiled from the first change (with --profile)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args[1:]); err != nil {
		return nil, usageError{err.Error()}
	}
	if fs.NArg() == 1 && fs.Arg(0) == "version" {
		return nil, nil
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	for _, u := range strings.Split(*api, ",") {
		if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
			if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
				return nil, usageError{fmt.Sprintf("--api: %q must start with http:// or https://", u)}
			}
			cfg.apiURLs = append(cfg.apiURLs, u)
		}
	}
	for _, p := range strings.Split(*proxies, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 || n > 100_000 {
			return nil, usageError{fmt.Sprintf("--proxies: %q is not a count in [1, 100000]", p)}
		}
		cfg.proxies = append(cfg.proxies, n)
	}
	o := &cfg.load
	switch {
	case o.Changes < 1 || o.Changes > 10_000:
		return nil, usageError{fmt.Sprintf("--changes must be in [1, 10000], got %d", o.Changes)}
	case o.StreamsPerConn < 1 || o.StreamsPerConn > 10_000:
		return nil, usageError{fmt.Sprintf("--streams-per-conn must be in [1, 10000], got %d", o.StreamsPerConn)}
	case o.Backends < 1 || o.Backends > 60_000:
		return nil, usageError{fmt.Sprintf("--backends must be in [1, 60000], got %d", o.Backends)}
	case o.Services < 1 || o.Services > 10_000:
		return nil, usageError{fmt.Sprintf("--services must be in [1, 10000], got %d", o.Services)}
	case o.Concurrency < 1 || o.Concurrency > 1000:
		return nil, usageError{fmt.Sprintf("--concurrency must be in [1, 1000], got %d", o.Concurrency)}
	case o.Timeout <= 0:
		return nil, usageError{fmt.Sprintf("--timeout must be positive, got %s", o.Timeout)}
	case cfg.profSecs < time.Second:
		return nil, usageError{fmt.Sprintf("--profile-seconds must be at least 1s, got %s", cfg.profSecs)}
	case o.SetupTimeout <= 0:
		return nil, usageError{fmt.Sprintf("--setup-timeout must be positive, got %s", o.SetupTimeout)}
	case len(cfg.apiURLs) == 0 && (cfg.replicas < 1 || cfg.replicas > 9):
		return nil, usageError{fmt.Sprintf("--replicas must be in [1, 9], got %d", cfg.replicas)}
	}
	if err := cfg.logLevel.UnmarshalText([]byte(*logLevel)); err != nil {
		return nil, usageError{fmt.Sprintf("--log-level: %q is not debug, info, warn or error", *logLevel)}
	}
	if len(cfg.apiURLs) == 0 {
		abs, err := filepath.Abs(cfg.binDir)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--bin-dir: %v", err)}
		}
		if _, err := os.Stat(filepath.Join(abs, "kuma-cp")); err != nil {
			return nil, usageError{fmt.Sprintf("--bin-dir: no kuma-cp binary in %s (run make build, or give --api)", abs)}
		}
		cfg.binDir = abs
	}
	return cfg, nil
}

func main() {
	// Thousands of simulated proxies allocate a little per response each:
	// collect less often (the tool's CPU competes with the replicas').
	// GOGC, if set, wins; it is not passed to the replicas.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "kuma-xds-load:", err)
		var ue usageError
		if errors.As(err, &ue) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// errNotConverged: the results were reported, but some proxy missed a change.
var errNotConverged = errors.New("some proxies did not get every change in time (see the report)")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseArgs(args, stderr)
	if err != nil {
		return err
	}
	if cfg == nil {
		fmt.Fprintf(stdout, "kuma-xds-load %s\n", version.Get())
		return nil
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.logLevel})).With("component", "kuma-xds-load")
	cfg.load.Log = log
	// The simulated proxies log only errors: thousands of them would drown the rest.
	cfg.load.ClientLog = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: max(cfg.logLevel, slog.LevelError)}))
	kumaCP := ""
	if len(cfg.apiURLs) == 0 {
		kumaCP = filepath.Join(cfg.binDir, "kuma-cp")
	}
	m := probeMachine(ctx, kumaCP)
	at := time.Now()
	var levels []*levelResult
	missing := false
	for _, n := range cfg.proxies {
		o := cfg.load
		o.Proxies = n
		lvl, err := runOne(ctx, cfg, o, log, stderr)
		if err != nil {
			return fmt.Errorf("%d proxies: %w", n, err)
		}
		fmt.Fprint(stdout, summary(lvl))
		levels = append(levels, lvl)
		missing = missing || lvl.Missing > 0
	}
	if cfg.out != "" {
		key := modeKey(cfg.load.Delta, cfg.load.Register) + " " + strings.Trim(strings.ReplaceAll(fmt.Sprint(cfg.proxies), " ", ","), "[]")
		if len(cfg.apiURLs) == 0 && cfg.replicas != 3 {
			key += fmt.Sprintf(" x%d", cfg.replicas) // a started cluster of another size: its own section
		}
		body := section(cfg.cmdline, at, m, cfg.load, len(cfg.apiURLs) == 0, levels)
		if err := writeSection(cfg.out, key, body); err != nil {
			return err
		}
		log.Info("report written", "file", cfg.out, "section", key)
	}
	if missing {
		return errNotConverged
	}
	return nil
}

// runOne runs one level on the existing cluster, or on a fresh one.
func runOne(ctx context.Context, cfg *config, o loadOptions, log *slog.Logger, stderr io.Writer) (*levelResult, error) {
	if len(cfg.apiURLs) > 0 {
		t, err := newHTTPTarget(ctx, cfg.apiURLs)
		if err != nil {
			return nil, err
		}
		o.AroundChanges = cfg.profiler(t, o.Proxies, log)
		res, err := runLevel(ctx, t, o)
		if !cfg.keep {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
			defer cancel()
			if cerr := cleanup(cctx, t, o); cerr != nil {
				log.Warn("cannot remove the Dataplanes the load created", "err", cerr)
			}
		}
		return res, err
	}
	base, err := os.MkdirTemp("", "kuma-xds-load-")
	if err != nil {
		return nil, err
	}
	if cfg.keep {
		log.Info("data dirs and logs kept", "dir", base)
	} else {
		defer os.RemoveAll(base)
	}
	extra := []string{}
	if !cfg.rebal {
		extra = append(extra, "--xds-rebalance-rate", "0")
	}
	if cfg.profile != "" {
		extra = append(extra, "--debug-pprof")
	}
	log.Info("starting a cluster", "replicas", cfg.replicas, "bin", cfg.binDir)
	var dumping atomic.Bool
	logf := func(format string, args ...any) {
		if dumping.Load() {
			fmt.Fprintf(stderr, format+"\n", args...)
			return
		}
		log.Debug(fmt.Sprintf(format, args...))
	}
	c, err := testcluster.Start(ctx, testcluster.Options{N: cfg.replicas, BinDir: cfg.binDir, BaseDir: base, StartTogether: true,
		ExtraArgs: extra, Logf: logf})
	defer c.Close()
	dump := func() {
		if ctx.Err() == nil {
			dumping.Store(true)
			c.DumpLogs(64 << 10)
			dumping.Store(false)
		}
	}
	if err != nil {
		dump()
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := c.WaitReady(wctx); err != nil {
		dump()
		return nil, err
	}
	if _, err := c.WaitLeader(wctx); err != nil {
		dump()
		return nil, err
	}
	var apis []string
	for _, r := range c.Replicas() {
		apis = append(apis, r.APIURL())
	}
	t, err := newHTTPTarget(ctx, apis)
	if err != nil {
		return nil, err
	}
	o.AroundChanges = cfg.profiler(t, o.Proxies, log)
	res, err := runLevel(ctx, t, o)
	if err != nil {
		dump()
	}
	return res, err
}

// profiler returns the AroundChanges hook that profiles the change phase:
// this process until the changes end, each replica for --profile-seconds.
func (cfg *config) profiler(t *httpTarget, proxies int, log *slog.Logger) func(context.Context) func() {
	if cfg.profile == "" {
		return nil
	}
	return func(ctx context.Context) func() {
		if err := os.MkdirAll(cfg.profile, 0o755); err != nil {
			log.Warn("cannot profile", "err", err)
			return func() {}
		}
		tag := fmt.Sprintf("%s-%d", modeKey(cfg.load.Delta, cfg.load.Register), proxies)
		self := filepath.Join(cfg.profile, "kuma-xds-load-"+tag+".pprof")
		f, err := os.Create(self)
		if err == nil {
			if err = pprof.StartCPUProfile(f); err != nil {
				_ = f.Close()
				f = nil
			}
		}
		if err != nil {
			log.Warn("cannot profile the load tool", "err", err)
		}
		var wg sync.WaitGroup
		for _, r := range t.replicas {
			path := filepath.Join(cfg.profile, r.Name+"-"+tag+".pprof")
			url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", r.APIURL, int(cfg.profSecs.Seconds()))
			wg.Go(func() {
				client := testcluster.NewClient(cfg.profSecs + 30*time.Second)
				status, _, body, err := client.Get(ctx, url)
				if err == nil && status != http.StatusOK {
					err = fmt.Errorf("GET %s: status %d (is the replica running with --debug-pprof?)", url, status)
				}
				if err == nil {
					err = os.WriteFile(path, body, 0o644)
				}
				if err != nil {
					log.Warn("cannot profile a replica", "replica", r.Name, "err", err)
					return
				}
				log.Info("replica profile written", "file", path)
			})
		}
		return func() {
			if f != nil {
				pprof.StopCPUProfile()
				_ = f.Close()
				log.Info("load tool profile written", "file", self)
			}
			wg.Wait()
			// What each replica holds once the changes are done: its heap
			// profile and its metrics page (Go memory figures included).
			for _, r := range t.replicas {
				for _, get := range []struct{ url, file string }{
					{r.APIURL + "/debug/pprof/heap", r.Name + "-" + tag + ".heap.pprof"},
					{r.APIURL + "/metrics", r.Name + "-" + tag + ".metrics.txt"},
				} {
					path := filepath.Join(cfg.profile, get.file)
					if err := fetchTo(ctx, get.url, path); err != nil {
						log.Warn("cannot save a replica's heap profile or metrics", "replica", r.Name, "err", err)
						continue
					}
					log.Info("replica heap profile or metrics written", "file", path)
				}
			}
		}
	}
}

// fetchTo writes the body of GET url to path.
func fetchTo(ctx context.Context, url, path string) error {
	status, _, body, err := testcluster.NewClient(30*time.Second).Get(ctx, url)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("GET %s: status %d", url, status)
	}
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, body, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
