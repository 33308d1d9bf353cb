package xds

import (
	"fmt"
	"hash"
	"hash/fnv"
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
	return strconv.FormatUint(index, 10) + "." + fmt.Sprintf("%08x", uint32(hash^(hash>>32)))
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

type hasher struct{ h hash.Hash64 }

func newHasher() hasher { return hasher{h: fnv.New64a()} }

func (h hasher) add(parts ...[]byte) {
	for _, p := range parts {
		var n [8]byte
		l := uint64(len(p))
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		_, _ = h.h.Write(n[:])
		_, _ = h.h.Write(p)
	}
}

func (h hasher) addString(s string) { h.add([]byte(s)) }

func (h hasher) sum() uint64 { return h.h.Sum64() }
