package testcluster

import (
	"errors"
	"fmt"
	"net"
	"sync"
)

// handedOut remembers every port FreePorts returned in this process, so two
// calls never return the same port even if the first caller has not bound it yet.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// FreePorts returns n distinct ports that are free on 127.0.0.1 for both TCP
// and UDP (gossip uses both) at the time of the call, and that this process
// has not handed out before. Another process may still take one before it is
// used; the kernel rarely reuses an ephemeral port that quickly.
func FreePorts(n int) ([]int, error) {
	if n < 0 {
		return nil, fmt.Errorf("free ports: n must not be negative, got %d", n)
	}
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	var (
		ports   []int
		holders []func()
	)
	// Keep every candidate bound until all n are found, so they are distinct.
	defer func() {
		for _, release := range holders {
			release()
		}
	}()
	for attempts := 0; len(ports) < n; attempts++ {
		if attempts > 50*n+100 {
			return nil, errors.New("free ports: too many attempts")
		}
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free ports: listen tcp: %w", err)
		}
		port := tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			tl.Close()
			continue
		}
		holders = append(holders, func() { tl.Close(); ul.Close() })
		if handedOut.ports[port] {
			continue
		}
		handedOut.ports[port] = true
		ports = append(ports, port)
	}
	return ports, nil
}
