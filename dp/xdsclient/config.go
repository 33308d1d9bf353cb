package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
)

// Defaults of the Config fields left zero.
const (
	DefaultMinBackoff       = 50 * time.Millisecond
	DefaultMaxBackoff       = 2 * time.Second
	DefaultDiscoverInterval = 30 * time.Second
)

// Config configures a Client. NodeID and Servers are required.
type Config struct {
	// NodeID is the proxy's node id, "{mesh}.{name}".
	NodeID string
	// Dataplane, if set, is the proxy's Dataplane document (JSON or YAML),
	// sent in node metadata field "dataplane.resource" so that the control
	// plane registers it (self-registration, as kuma-dp does).
	Dataplane []byte
	// Servers are xDS addresses of control plane replicas, "host:port" (a
	// "grpc://" prefix is accepted). The first one is tried first.
	Servers []string
	// Delta selects incremental xDS (DeltaAggregatedResources) instead of
	// state of the world (StreamAggregatedResources).
	Delta bool
	// Logger receives state changes (connected, lost, NACK); nil: slog.Default().
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the jittered exponential backoff
	// between reconnects [50ms, 2s].
	MinBackoff, MaxBackoff time.Duration
	// Discover, if set, returns more replica addresses (see DiscoverFromAPI).
	// It is called when Run starts, every DiscoverInterval, and after a
	// stream breaks (at most once per MinBackoff).
	Discover func(ctx context.Context) ([]string, error)
	// DiscoverInterval is how often Discover is called [30s].
	DiscoverInterval time.Duration
	// Reject, if set, is called with the decoded resources of every response
	// that passed validation; an error NACKs the response (tests force NACKs
	// with it). It must not modify the resources.
	Reject func(typeURL string, resources []proto.Message) error
	// OnUpdate, if set, is called on the client's goroutine with every newly
	// accepted snapshot. It must return quickly and must not modify it.
	OnUpdate func(*Snapshot)
	// Initial is the config to start from (a snapshot saved by an earlier
	// run, see Snapshot.MarshalJSON): it is served by Snapshot until a
	// replica sends something newer, and its versions are sent on connect so
	// that an unchanged config is not sent again.
	Initial *Snapshot
	// KeepaliveTime and KeepaliveTimeout: the client pings a silent
	// connection after KeepaliveTime and drops it (and moves to another
	// replica) if the ping is not answered within KeepaliveTimeout; this
	// is how a paused or cut-off replica is noticed [30s, 10s; the server
	// refuses pings more often than every 5s]. Ignored with a Fleet.
	KeepaliveTime, KeepaliveTimeout time.Duration
	// ProbeInterval, if set, makes the client ask the replica of its stream
	// whether it is alive every ProbeInterval (the replica-discovery method,
	// over the same connection) and leave it after ProbeFailures probes in
	// a row got no answer within ProbeTimeout [1s, 2]: a paused replica is
	// left within about ProbeInterval × ProbeFailures + ProbeTimeout.
	ProbeInterval, ProbeTimeout time.Duration
	ProbeFailures               int
	// Fleet, if set, shares gRPC connections and decoded resources with the
	// other clients using it (the load tool runs thousands of clients).
	Fleet *Fleet
}

func (c *Config) validate() error {
	var errs []error
	if c.NodeID == "" {
		errs = append(errs, errors.New("NodeID: required, as {mesh}.{name}"))
	} else if i := strings.IndexByte(c.NodeID, '.'); i <= 0 || i == len(c.NodeID)-1 {
		errs = append(errs, fmt.Errorf("NodeID: %q must be {mesh}.{name}", c.NodeID))
	}
	if len(c.Servers) == 0 && c.Discover == nil {
		errs = append(errs, errors.New("Servers: at least one xDS address is required"))
	}
	for i, s := range c.Servers {
		addr, err := NormalizeAddress(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("Servers[%d]: %w", i, err))
			continue
		}
		c.Servers[i] = addr
	}
	if len(c.Servers) == 0 && c.Discover != nil {
		errs = append(errs, errors.New("Servers: at least one xDS address is required to start from (Discover adds more)"))
	}
	if c.MinBackoff < 0 || c.MaxBackoff < 0 {
		errs = append(errs, errors.New("MinBackoff, MaxBackoff: must not be negative"))
	}
	if c.DiscoverInterval < 0 {
		errs = append(errs, errors.New("DiscoverInterval: must not be negative"))
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	if c.MaxBackoff < c.MinBackoff {
		errs = append(errs, fmt.Errorf("MaxBackoff: %s is less than MinBackoff %s", c.MaxBackoff, c.MinBackoff))
	}
	if c.KeepaliveTime < 0 || c.KeepaliveTimeout < 0 {
		errs = append(errs, errors.New("KeepaliveTime, KeepaliveTimeout: must not be negative"))
	}
	if c.KeepaliveTime == 0 {
		c.KeepaliveTime = DefaultKeepaliveTime
	}
	if c.KeepaliveTimeout == 0 {
		c.KeepaliveTimeout = DefaultKeepaliveTimeout
	}
	if c.ProbeInterval < 0 || c.ProbeTimeout < 0 || c.ProbeFailures < 0 {
		errs = append(errs, errors.New("ProbeInterval, ProbeTimeout, ProbeFailures: must not be negative"))
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = time.Second
	}
	if c.ProbeFailures == 0 {
		c.ProbeFailures = 2
	}
	if c.DiscoverInterval == 0 {
		c.DiscoverInterval = DefaultDiscoverInterval
	}
	return errors.Join(errs...)
}

// NormalizeAddress checks an xDS address and returns it as "host:port". It
// accepts "host:port" and "grpc://host:port"; TLS ("grpcs://") is not
// supported by this client.
func NormalizeAddress(s string) (string, error) {
	orig := s
	s = strings.TrimSpace(s)
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		switch scheme {
		case "grpc":
			s = rest
		case "grpcs":
			return "", fmt.Errorf("address %q: grpcs (TLS) is not supported, use grpc://", orig)
		default:
			return "", fmt.Errorf("address %q: scheme %q is not supported, use grpc://host:port or host:port", orig, scheme)
		}
	}
	s = strings.TrimSuffix(s, "/")
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("address %q: want host:port: %w", orig, err)
	}
	if host == "" {
		return "", fmt.Errorf("address %q: host is empty", orig)
	}
	if strings.ContainsAny(host, "/ ") {
		return "", fmt.Errorf("address %q: invalid host %q", orig, host)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("address %q: port %q must be a number in [1, 65535]", orig, port)
	}
	return net.JoinHostPort(host, port), nil
}
