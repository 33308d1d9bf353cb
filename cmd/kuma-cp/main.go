// Command kuma-cp is one replica of the control plane: wiring only
// (flags → config → construct → run → signal → close).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/kuma-ha/kuma-ha/cluster"
	"github.com/kuma-ha/kuma-ha/cmd/internal/version"
	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/ops"
	"github.com/kuma-ha/kuma-ha/xds"
)

// gcPercent is kuma-cp's GOGC unless the environment sets one. Go counts
// goroutine stacks in the heap goal, and every proxy stream keeps two
// goroutines (tens of MB of stacks with thousands of proxies): collecting at
// 70 % growth instead of 100 % keeps a replica with 2,000 proxies around
// 20 MB smaller for a few percent more GC work.
const gcPercent = 70

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "kuma-cp",
		Short:         "Highly available, Raft-replicated Kuma control plane",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCmd(), &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "kuma-cp %s\n", version.Get())
		},
	})
	return root
}

func newRunCmd() *cobra.Command {
	cfg := DefaultConfig()
	var configFile string
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run a control plane replica",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			file, err := readConfigFile(configFile, cmd.Flags())
			if err != nil {
				return err
			}
			if err := fillUnset(cmd.Flags(), file, os.Getenv); err != nil {
				return err
			}
			if cfg.AdvertiseHost == "" {
				cfg.AdvertiseHost = defaultAdvertiseHost()
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return run(ctx, cfg)
		},
	}
	cmd.Flags().StringVar(&configFile, "config", os.Getenv("KUMA_CONFIG"), "YAML file whose keys are flag names (flags and KUMA_* environment variables win over it)")
	cfg.bindFlags(cmd.Flags())
	return cmd
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("--log-level: %q is not one of debug, info, warn, error", s)
	}
	return l, nil
}

// run starts one replica and blocks until ctx is cancelled (SIGTERM/SIGINT)
// or a component fails, then shuts everything down.
func run(ctx context.Context, cfg Config) error {
	level, _ := parseLevel(cfg.LogLevel)
	base := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	logger := base.With("replica", cfg.Name)
	slog.SetDefault(logger)

	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}

	state := fsm.New(fsm.Options{Logger: logger.With("component", "fsm")})

	cc := cfg.clusterConfig()
	cc.Version = version.Get()
	cc.Logger = base // the cluster package adds its own replica and component attributes
	node, err := cluster.New(cc, state)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	node.RunWhileLeader("default-mesh", func(ctx context.Context) { ensureDefaultMesh(ctx, node, logger) })

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, c := range node.Collectors() {
		reg.MustRegister(c)
	}
	handler := ops.NewHandler(ops.Config{
		Hostname:    cfg.Name,
		Version:     version.Get(),
		Mode:        cfg.Mode,
		MaxBodySize: cfg.MaxBodySize,
		Logger:      logger, // ops adds component=ops
		Registry:    reg,
	}, state, node)

	rebalance := cfg.XDSRebalanceRate
	if rebalance == 0 {
		rebalance = -1 // disabled
	}
	xdsServer, err := xds.New(xds.Options{
		State:            state,
		Cluster:          xdsCluster{node},
		Logger:           logger,
		Registry:         reg,
		InsightFlush:     cfg.InsightFlushInterval,
		DeregisterGrace:  cfg.DataplaneCleanupGrace,
		DeadReplicaGrace: cfg.DeadReplicaGrace,
		RebalanceRate:    rebalance,
	})
	if err != nil {
		return fmt.Errorf("xds: %w", err)
	}

	apiLn, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("--api-addr: %w", err)
	}
	xdsLn, err := net.Listen("tcp", cfg.XDSAddr)
	if err != nil {
		_ = apiLn.Close()
		return fmt.Errorf("--xds-addr: %w", err)
	}
	if cfg.DebugPprof {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.Handle("/", handler)
		handler = mux
	}
	api := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	apiErr := make(chan error, 1)
	go func() { apiErr <- api.Serve(apiLn) }()

	if err := node.Start(ctx); err != nil {
		_ = api.Close()
		_ = xdsLn.Close()
		<-apiErr
		return fmt.Errorf("cluster: %w", err)
	}
	xdsCtx, stopXDS := context.WithCancel(context.Background())
	defer stopXDS()
	xdsErr := make(chan error, 1)
	go func() { xdsErr <- xdsServer.Serve(xdsCtx, xdsLn) }()
	logger.Info("control plane started", "api", apiLn.Addr().String(), "xds", xdsLn.Addr().String(), "raft", cfg.RaftAddr,
		"gossip", cfg.GossipAddr, "advertise", cfg.AdvertiseHost, "bootstrapExpect", cfg.BootstrapExpect,
		"join", strings.Join(cfg.Join, ","), "version", version.Get())

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("stopping")
	case err := <-apiErr:
		runErr = fmt.Errorf("api server: %w", err)
	case err := <-xdsErr:
		runErr = fmt.Errorf("xds server: %w", err)
		xdsErr <- nil
	}

	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// The API first: new connections are refused (clients such as kumactl move
	// to another replica) and requests in flight finish while Raft still runs.
	// Then the cluster node, which hands leadership over before it stops.
	if err := api.Shutdown(shutdownCtx); err != nil {
		_ = api.Close()
	}
	// Then xDS: every proxy is told to reconnect to another replica, and the
	// last connection reports are written while Raft still runs.
	xdsServer.Shutdown(shutdownCtx)
	stopXDS()
	if err := <-xdsErr; err != nil && runErr == nil {
		logger.Warn("xds server", "err", err)
	}
	if err := node.Close(); err != nil {
		logger.Warn("cluster close", "err", err)
	}
	if runErr == nil {
		if err := <-apiErr; err != nil && !errors.Is(err, http.ErrServerClosed) {
			runErr = err
		}
	}
	logger.Info("stopped")
	return runErr
}

// ensureDefaultMesh runs on the leader: it proposes the command that creates
// the default Mesh once per cluster (the state machine ignores it afterwards),
// retrying until it is committed or leadership is lost.
func ensureDefaultMesh(ctx context.Context, node *cluster.Node, logger *slog.Logger) {
	backoff := 100 * time.Millisecond
	for {
		res, err := node.Apply(ctx, fsm.Command{Type: fsm.CmdEnsureDefaultMesh})
		if err == nil {
			if res != nil && res.Created {
				logger.Info("created the default mesh")
			}
			return
		}
		logger.Warn("ensure default mesh", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}
