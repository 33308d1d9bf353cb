package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"

	"github.com/kuma-ha/kuma-ha/cluster"
	"github.com/kuma-ha/kuma-ha/cmd/internal/flagenv"
)

// Config is everything `kuma-cp run` needs. Flags, the environment
// (KUMA_ + flag in upper snake case) and a YAML file (--config, keys are the
// flag names) all fill this one struct; flags win over the environment, which
// wins over the file.
type Config struct {
	Mode             string
	Zone             string
	KDSGlobalAddress []string
	Name             string
	DataDir          string
	APIAddr          string
	XDSAddr          string
	KDSAddr          string
	RaftAddr         string
	GossipAddr       string
	AdvertiseHost    string
	Join             []string
	BootstrapExpect  int
	LogLevel         string

	HeartbeatTimeout        time.Duration
	ElectionTimeout         time.Duration
	LeaderLeaseTimeout      time.Duration
	CommitTimeout           time.Duration
	ApplyTimeout            time.Duration
	SnapshotThreshold       uint64
	ServerStabilizationTime time.Duration
	DeadServerCleanup       bool
	MaxBodySize             int64
	ShutdownTimeout         time.Duration

	DataplaneCleanupGrace time.Duration
	DeadReplicaGrace      time.Duration
	InsightFlushInterval  time.Duration
	XDSRebalanceRate      float64
	DebugPprof            bool
}

// DefaultConfig is what `kuma-cp run` with no flags uses: a single-node
// standalone control plane with its data under ./kuma-cp-data.
func DefaultConfig() Config {
	cc := cluster.DefaultConfig()
	host, _ := os.Hostname()
	return Config{
		Mode:                    "standalone",
		Name:                    host,
		DataDir:                 "./kuma-cp-data",
		APIAddr:                 ":5681",
		XDSAddr:                 ":5678",
		KDSAddr:                 ":5685",
		RaftAddr:                ":5690",
		GossipAddr:              ":5691",
		BootstrapExpect:         1,
		LogLevel:                "info",
		HeartbeatTimeout:        cc.HeartbeatTimeout,
		ElectionTimeout:         cc.ElectionTimeout,
		LeaderLeaseTimeout:      cc.LeaderLeaseTimeout,
		CommitTimeout:           cc.CommitTimeout,
		ApplyTimeout:            cc.ApplyTimeout,
		SnapshotThreshold:       cc.SnapshotThreshold,
		ServerStabilizationTime: cc.ServerStabilizationTime,
		MaxBodySize:             1 << 20,
		ShutdownTimeout:         10 * time.Second,
		DataplaneCleanupGrace:   time.Minute,
		DeadReplicaGrace:        5 * time.Second,
		InsightFlushInterval:    10 * time.Second,
		XDSRebalanceRate:        2,
	}
}

// bindFlags registers one flag per field, defaulting to c's values.
func (c *Config) bindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Mode, "mode", c.Mode, "standalone, global or zone")
	fs.StringVar(&c.Zone, "zone", c.Zone, "zone name (required in zone mode)")
	fs.StringSliceVar(&c.KDSGlobalAddress, "kds-global-address", c.KDSGlobalAddress, "grpc(s)://host:port of the global control plane replicas (zone mode), comma-separated")
	fs.StringVar(&c.Name, "name", c.Name, "this replica's unique name in its cluster")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the Raft log, stable store and snapshots")
	fs.StringVar(&c.APIAddr, "api-addr", c.APIAddr, "HTTP listen address: REST API, health, metrics")
	fs.StringVar(&c.XDSAddr, "xds-addr", c.XDSAddr, "gRPC listen address: xDS (ADS) for data plane proxies")
	fs.StringVar(&c.KDSAddr, "kds-addr", c.KDSAddr, "gRPC listen address: KDS, global mode only")
	fs.StringVar(&c.RaftAddr, "raft-addr", c.RaftAddr, "TCP listen address: Raft and replica-to-replica RPC")
	fs.StringVar(&c.GossipAddr, "gossip-addr", c.GossipAddr, "TCP+UDP listen address: memberlist gossip")
	fs.StringVar(&c.AdvertiseHost, "advertise-host", c.AdvertiseHost, "host other replicas and proxies use to reach this one (default: first non-loopback address, or 127.0.0.1)")
	fs.StringSliceVar(&c.Join, "join", c.Join, "gossip addresses (host:port) of other replicas, comma-separated")
	fs.IntVar(&c.BootstrapExpect, "bootstrap-expect", c.BootstrapExpect, "how many replicas must have joined before the cluster forms")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.DurationVar(&c.HeartbeatTimeout, "raft-heartbeat-timeout", c.HeartbeatTimeout, "how long a follower waits without hearing from the leader before it starts an election")
	fs.DurationVar(&c.ElectionTimeout, "raft-election-timeout", c.ElectionTimeout, "how long a candidate waits for votes before retrying")
	fs.DurationVar(&c.LeaderLeaseTimeout, "raft-leader-lease-timeout", c.LeaderLeaseTimeout, "how long a leader stays leader without reaching a quorum")
	fs.DurationVar(&c.CommitTimeout, "raft-commit-timeout", c.CommitTimeout, "how often an idle leader tells followers the commit index: lower = faster read-your-writes on followers, more idle traffic")
	fs.DurationVar(&c.ApplyTimeout, "apply-timeout", c.ApplyTimeout, "how long a write may wait to be committed before it fails with 503")
	fs.Uint64Var(&c.SnapshotThreshold, "raft-snapshot-threshold", c.SnapshotThreshold, "log entries between snapshots")
	fs.DurationVar(&c.ServerStabilizationTime, "server-stabilization-time", c.ServerStabilizationTime, "how long a new replica must be healthy before it becomes a voter")
	fs.BoolVar(&c.DeadServerCleanup, "dead-server-cleanup", c.DeadServerCleanup, "remove replicas that gossip declares dead from the Raft configuration automatically")
	fs.Int64Var(&c.MaxBodySize, "max-body-size", c.MaxBodySize, "largest accepted request body in bytes")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "how long a graceful stop may take")
	fs.DurationVar(&c.DataplaneCleanupGrace, "dataplane-cleanup-grace", c.DataplaneCleanupGrace, "remove a Dataplane its proxy registered once that proxy has been connected to no replica for this long")
	fs.DurationVar(&c.DeadReplicaGrace, "dead-replica-grace", c.DeadReplicaGrace, "mark the proxies of a replica that gossip declared dead offline after this long")
	fs.DurationVar(&c.InsightFlushInterval, "insight-flush-interval", c.InsightFlushInterval, "how often proxy response and ACK counters (DataplaneInsight) are written through the log; connects, disconnects and NACKs go out within a quarter of it, at most 250ms")
	fs.BoolVar(&c.DebugPprof, "debug-pprof", c.DebugPprof, "serve Go's profiler under /debug/pprof/ on the API address")
	fs.Float64Var(&c.XDSRebalanceRate, "xds-rebalance-rate", c.XDSRebalanceRate, "streams per second a replica holding more than its fair share of proxies closes (0 disables rebalancing)")
}

// fillUnset sets every flag the command line did not set from the
// environment (KUMA_RAFT_ADDR for --raft-addr) or else from the YAML file.
func fillUnset(fs *pflag.FlagSet, file map[string]any, getenv func(string) string) error {
	return flagenv.Fill(fs, file, getenv, "config")
}

// readConfigFile parses the YAML file and rejects keys that are not flags.
func readConfigFile(path string, fs *pflag.FlagSet) (map[string]any, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	m := map[string]any{}
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	for k := range m {
		if fs.Lookup(k) == nil || k == "config" {
			return nil, fmt.Errorf("--config %s: unknown key %q (keys are kuma-cp run flag names)", path, k)
		}
	}
	return m, nil
}

// Validate names the first invalid flag.
func (c *Config) Validate() error {
	switch c.Mode {
	case "standalone", "global", "zone":
	default:
		return fmt.Errorf("--mode: %q is not one of standalone, global, zone", c.Mode)
	}
	if c.Mode == "zone" && c.Zone == "" {
		return errors.New("--zone: required in zone mode")
	}
	if c.Name == "" {
		return errors.New("--name: must not be empty")
	}
	if c.DataDir == "" {
		return errors.New("--data-dir: must not be empty")
	}
	for _, a := range []struct{ flag, v string }{
		{"--api-addr", c.APIAddr}, {"--xds-addr", c.XDSAddr}, {"--kds-addr", c.KDSAddr},
		{"--raft-addr", c.RaftAddr}, {"--gossip-addr", c.GossipAddr},
	} {
		if _, err := listenPort(a.v); err != nil {
			return fmt.Errorf("%s: %w", a.flag, err)
		}
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return fmt.Errorf("--join: %q is not host:port: %w", j, err)
		}
	}
	if c.BootstrapExpect < 1 {
		return fmt.Errorf("--bootstrap-expect: must be at least 1, got %d", c.BootstrapExpect)
	}
	if c.AdvertiseHost != "" && strings.ContainsAny(c.AdvertiseHost, ":/ ") {
		if _, err := netip.ParseAddr(c.AdvertiseHost); err != nil {
			return fmt.Errorf("--advertise-host: %q is not a host name or IP address", c.AdvertiseHost)
		}
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"--raft-heartbeat-timeout", c.HeartbeatTimeout}, {"--raft-election-timeout", c.ElectionTimeout},
		{"--raft-leader-lease-timeout", c.LeaderLeaseTimeout}, {"--apply-timeout", c.ApplyTimeout},
		{"--raft-commit-timeout", c.CommitTimeout},
		{"--shutdown-timeout", c.ShutdownTimeout},
		{"--dataplane-cleanup-grace", c.DataplaneCleanupGrace}, {"--dead-replica-grace", c.DeadReplicaGrace},
		{"--insight-flush-interval", c.InsightFlushInterval},
	} {
		if d.v <= 0 {
			return fmt.Errorf("%s: must be positive, got %s", d.flag, d.v)
		}
	}
	if c.XDSRebalanceRate < 0 || c.XDSRebalanceRate > 1000 {
		return fmt.Errorf("--xds-rebalance-rate: must be between 0 and 1000 streams a second, got %g", c.XDSRebalanceRate)
	}
	if c.MaxBodySize < 1024 {
		return fmt.Errorf("--max-body-size: must be at least 1024 bytes, got %d", c.MaxBodySize)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return err
	}
	return nil
}

// listenPort checks a listen address "[host]:port" and returns its port.
func listenPort(addr string) (string, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q is not [host]:port: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", fmt.Errorf("%q: port must be a number in [0, 65535]", addr)
	}
	return port, nil
}

// advertised turns a listen address into the address others dial.
func (c *Config) advertised(listen string) string {
	port, _ := listenPort(listen)
	return net.JoinHostPort(c.AdvertiseHost, port)
}

// defaultAdvertiseHost is the first non-loopback IPv4 address, or 127.0.0.1.
func defaultAdvertiseHost() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil && ipn.IP.IsGlobalUnicast() {
				return ipn.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

func (c *Config) clusterConfig() cluster.Config {
	cc := cluster.DefaultConfig()
	cc.Name = c.Name
	cc.DataDir = c.DataDir
	cc.RaftAddr = c.RaftAddr
	cc.GossipAddr = c.GossipAddr
	cc.AdvertiseHost = c.AdvertiseHost
	cc.APIAddr = c.advertised(c.APIAddr)
	cc.XDSAddr = c.advertised(c.XDSAddr)
	cc.Join = c.Join
	cc.BootstrapExpect = c.BootstrapExpect
	cc.HeartbeatTimeout = c.HeartbeatTimeout
	cc.ElectionTimeout = c.ElectionTimeout
	cc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	cc.CommitTimeout = c.CommitTimeout
	cc.ApplyTimeout = c.ApplyTimeout
	cc.SnapshotThreshold = c.SnapshotThreshold
	cc.ServerStabilizationTime = c.ServerStabilizationTime
	cc.DeadServerCleanup = c.DeadServerCleanup
	return cc
}
