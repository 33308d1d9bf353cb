package testcluster

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
)

// handedOut remembers every port FreePorts returned in this process, so two
// calls never return the same port even if the first caller has not bound it yet.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// lowestPort is the bottom of the range FreePorts picks from when the
// kernel's ephemeral range leaves room below it.
const lowestPort = 10000

// FreePorts returns n distinct ports that are free on 127.0.0.1 for both TCP
// and UDP (gossip uses both) at the time of the call, and that this process
// has not handed out before.
//
// Ports are picked below the kernel's ephemeral range when possible: the
// kernel never gives those to outgoing connections, so a replica that is
// killed and restarted finds its port still free. Another process may still
// take one in between; with random picks that is rare.
func FreePorts(n int) ([]int, error) {
	if n < 0 {
		return nil, fmt.Errorf("free ports: n must not be negative, got %d", n)
	}
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = map[int]bool{}
	}
	lo, hi := lowestPort, 0
	if ephLo, _, err := ephemeralRange(); err == nil && ephLo-lowestPort >= 1000 {
		hi = ephLo - 1
	}
	var ports []int
	for attempts := 0; len(ports) < n; attempts++ {
		if attempts > 100*n+100 {
			return nil, errors.New("free ports: too many attempts")
		}
		port := 0 // let the kernel pick when there is no room below the ephemeral range
		if hi > lo {
			port = lo + rand.IntN(hi-lo+1)
		}
		got, ok := tryPort(port)
		if !ok || handedOut.ports[got] {
			continue
		}
		handedOut.ports[got] = true
		ports = append(ports, got)
	}
	return ports, nil
}

// tryPort checks that port (0: one the kernel picks) can be bound for TCP
// and UDP on 127.0.0.1, and returns it.
func tryPort(port int) (int, bool) {
	tl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return 0, false
	}
	defer tl.Close()
	port = tl.Addr().(*net.TCPAddr).Port
	ul, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return 0, false
	}
	ul.Close()
	return port, true
}

func ephemeralRange() (lo, hi int, err error) {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscanf(strings.TrimSpace(string(data)), "%d %d", &lo, &hi); err != nil {
		return 0, 0, fmt.Errorf("parse ip_local_port_range %q: %w", data, err)
	}
	return lo, hi, nil
}
