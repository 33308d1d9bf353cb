package cluster

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// ConfigError names the invalid Config field.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("cluster config: %s: %s", e.Field, e.Reason)
}

const minTimeout = 5 * time.Millisecond

// Validate names the first invalid field.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	switch {
	case strings.TrimSpace(c.Name) == "":
		return bad("Name", "must not be empty")
	case strings.ContainsAny(c.Name, " \t\r\n/"):
		return bad("Name", "%q must not contain whitespace or '/'", c.Name)
	case len(c.Name) > 128:
		return bad("Name", "longer than 128 characters")
	case c.DataDir == "":
		return bad("DataDir", "must not be empty")
	}
	if err := checkHostPort(c.RaftAddr); err != nil {
		return bad("RaftAddr", "%v", err)
	}
	if err := checkHostPort(c.GossipAddr); err != nil {
		return bad("GossipAddr", "%v", err)
	}
	if strings.ContainsAny(c.AdvertiseHost, " :/") && net.ParseIP(c.AdvertiseHost) == nil {
		return bad("AdvertiseHost", "%q is not a host name or IP address", c.AdvertiseHost)
	}
	for i, j := range c.Join {
		if err := checkHostPort(j); err != nil {
			return bad(fmt.Sprintf("Join[%d]", i), "%v", err)
		}
	}
	switch {
	case c.BootstrapExpect < 1:
		return bad("BootstrapExpect", "must be at least 1, got %d", c.BootstrapExpect)
	case c.HeartbeatTimeout < minTimeout:
		return bad("HeartbeatTimeout", "must be at least %s, got %s", minTimeout, c.HeartbeatTimeout)
	case c.ElectionTimeout < c.HeartbeatTimeout:
		return bad("ElectionTimeout", "must be at least HeartbeatTimeout (%s), got %s", c.HeartbeatTimeout, c.ElectionTimeout)
	case c.LeaderLeaseTimeout < minTimeout:
		return bad("LeaderLeaseTimeout", "must be at least %s, got %s", minTimeout, c.LeaderLeaseTimeout)
	case c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return bad("LeaderLeaseTimeout", "must not exceed HeartbeatTimeout (%s), got %s", c.HeartbeatTimeout, c.LeaderLeaseTimeout)
	case c.CommitTimeout <= 0:
		return bad("CommitTimeout", "must be positive, got %s", c.CommitTimeout)
	case c.ApplyTimeout <= 0:
		return bad("ApplyTimeout", "must be positive, got %s", c.ApplyTimeout)
	case c.SnapshotThreshold == 0:
		return bad("SnapshotThreshold", "must be positive")
	case c.SnapshotInterval < minTimeout:
		return bad("SnapshotInterval", "must be at least %s, got %s", minTimeout, c.SnapshotInterval)
	case c.ServerStabilizationTime < 0:
		return bad("ServerStabilizationTime", "must not be negative, got %s", c.ServerStabilizationTime)
	}
	return nil
}

func checkHostPort(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", s, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: port %q is not a number in 0-65535", s, port)
	}
	return nil
}

// advertiseHost is the host other replicas use: AdvertiseHost, else the
// host of RaftAddr when it is a specific address, else 127.0.0.1.
func (c Config) advertiseHost() string {
	if c.AdvertiseHost != "" {
		return c.AdvertiseHost
	}
	if h, _, err := net.SplitHostPort(c.RaftAddr); err == nil && h != "" {
		if ip := net.ParseIP(h); ip == nil || !ip.IsUnspecified() {
			return h
		}
	}
	return "127.0.0.1"
}
