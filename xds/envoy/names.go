package envoy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Name prefixes, as Kuma spells them.
const (
	inboundPrefix  = "inbound:"
	outboundPrefix = "outbound:"
	localPrefix    = "localhost:"
)

// defaultWorkloadAddress is where the application is reached when an inbound
// has no serviceAddress (Kuma universal's default).
const defaultWorkloadAddress = "127.0.0.1"

// joinName is prefix + net.JoinHostPort(addr, port) in one allocation: the
// address, in brackets if it has a colon (IPv6), a colon, the port.
func joinName(prefix, addr string, port uint32) string {
	var b strings.Builder
	b.Grow(len(prefix) + len(addr) + 8)
	b.WriteString(prefix)
	if strings.IndexByte(addr, ':') >= 0 {
		b.WriteByte('[')
		b.WriteString(addr)
		b.WriteByte(']')
	} else {
		b.WriteString(addr)
	}
	b.WriteByte(':')
	var num [10]byte
	b.Write(strconv.AppendUint(num[:0], uint64(port), 10))
	return b.String()
}

// InboundListenerName is Kuma's name of the listener of an inbound:
// "inbound:10.0.0.1:8080", "inbound:[fd00::1]:8080".
func InboundListenerName(addr string, port uint32) string { return joinName(inboundPrefix, addr, port) }

// OutboundListenerName is Kuma's name of the listener of an outbound.
func OutboundListenerName(addr string, port uint32) string {
	return joinName(outboundPrefix, addr, port)
}

// LocalClusterName is Kuma's name of the cluster that reaches the application
// behind an inbound: "localhost:8080".
func LocalClusterName(servicePort uint32) string {
	return localPrefix + strconv.FormatUint(uint64(servicePort), 10)
}

// qualifiedLocalClusterName names a local cluster whose servicePort is shared
// with another inbound that reaches a different serviceAddress:
// "localhost:10.0.0.9:8080".
func qualifiedLocalClusterName(addr string, servicePort uint32) string {
	return joinName(localPrefix, addr, servicePort)
}

// SubsetClusterName names the cluster of the endpoints of service that also
// carry every one of tags (kuma.io/service in tags is ignored). With no other
// tags it is the service itself. The suffix is 16 hex digits of SHA-256 over
// the sorted tags, each name and value prefixed by its length, so that two
// different tag sets never feed the hash the same bytes.
func SubsetClusterName(service string, tags map[string]string) string {
	keys := make([]string, 0, len(tags)+1)
	for k := range tags {
		if k != resource.ServiceTag {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return service
	}
	keys = append(keys, resource.ServiceTag)
	slices.Sort(keys)
	h := sha256.New()
	var lenBuf [binary.MaxVarintLen64]byte
	write := func(s string) {
		h.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	for _, k := range keys {
		write(k)
		if k == resource.ServiceTag {
			write(service)
		} else {
			write(tags[k])
		}
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	var b strings.Builder
	b.Grow(len(service) + 17)
	b.WriteString(service)
	b.WriteByte('-')
	var hx [16]byte
	hex.Encode(hx[:], sum[:8])
	b.Write(hx[:])
	return b.String()
}

// sanitizeMetric is Kuma's SanitizeMetric: every rune outside [a-zA-Z0-9_-]
// becomes one '_', so that names are safe in statsd and Prometheus stats.
func sanitizeMetric(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if !statChar(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if r < utf8.RuneSelf && statChar(byte(r)) {
			b.WriteByte(byte(r))
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func statChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// isIP reports whether s is an IP address Envoy can bind or connect to:
// no zone, no surrounding brackets.
func isIP(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}

func validPort(p uint32) bool { return p >= 1 && p <= 65535 }

// validTags reports whether every tag name and value is valid UTF-8 (protobuf
// strings must be).
func validTags(tags map[string]string) bool {
	for k, v := range tags {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return false
		}
	}
	return true
}
