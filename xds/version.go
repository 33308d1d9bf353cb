package xds

import (
	"strconv"
	"strings"
)

// Versions are "{index}.{hash}": index is the highest change index (see
// fsm.FSM.ChangeIndex) of the state the config was generated from, hash a
// digest of the config itself. Both are the same on every replica for the
// same state, so a proxy that moves between replicas sees the same version
// for the same config, and a replica can tell from a proxy's version whether
// it has caught up with the state that config came from.

func formatVersion(index uint64, hash uint64) string {
	const digits = "0123456789abcdef"
	var b [20 + 1 + 8]byte
	out := strconv.AppendUint(b[:0], index, 10)
	out = append(out, '.')
	h := uint32(hash ^ (hash >> 32)) // printed as %08x
	for shift := 28; shift >= 0; shift -= 4 {
		out = append(out, digits[h>>uint(shift)&0xf])
	}
	return string(out)
}

// versionIndex returns the index part of a version; 0 for "" or a version
// this control plane did not make.
func versionIndex(v string) uint64 {
	head, _, ok := strings.Cut(v, ".")
	if !ok {
		return 0
	}
	n, err := strconv.ParseUint(head, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// hasher is FNV-1a (64 bit) over length-prefixed parts, without allocating.
type hasher struct{ h uint64 }

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

func newHasher() *hasher { return &hasher{h: fnvOffset64} }

func (h *hasher) byte(b byte) {
	h.h ^= uint64(b)
	h.h *= fnvPrime64
}

func (h *hasher) length(n int) {
	l := uint64(n)
	for i := range 8 {
		h.byte(byte(l >> (8 * i)))
	}
}

func (h *hasher) add(parts ...[]byte) {
	for _, p := range parts {
		h.length(len(p))
		for _, b := range p {
			h.byte(b)
		}
	}
}

func (h *hasher) addString(s string) {
	h.length(len(s))
	for i := 0; i < len(s); i++ {
		h.byte(s[i])
	}
}

func (h *hasher) sum() uint64 { return h.h }
