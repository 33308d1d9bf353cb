package fsm

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// Digest is a hash of the full state (resources with versions and times, and
// the cluster markers), equal on converged replicas. Nothing local (applied
// index, watchers) is included. It encodes every resource: call it for
// checks, not on a hot path.
func (f *FSM) Digest() string {
	snap := f.Snapshot()
	defer snap.Release()
	h := sha256.New()
	e := &recordWriter{w: h}
	e.bytes([]byte("kuma-ha fsm digest v1"))
	e.markers(snap.markers)
	slices.SortFunc(snap.resources, compareResources)
	e.uvarint(uint64(len(snap.resources)))
	var v [8]byte
	for _, r := range snap.resources {
		e.bytes([]byte(r.Type))
		e.bytes([]byte(r.Mesh))
		e.bytes([]byte(r.Name))
		binary.BigEndian.PutUint64(v[:], r.Version)
		e.write(v[:])
		e.bytes([]byte(r.CreationTime.UTC().Format(time.RFC3339Nano)))
		e.bytes([]byte(r.ModificationTime.UTC().Format(time.RFC3339Nano)))
		labels := make([]string, 0, len(r.Labels))
		for k := range r.Labels {
			labels = append(labels, k)
		}
		slices.Sort(labels)
		e.uvarint(uint64(len(labels)))
		for _, k := range labels {
			e.bytes([]byte(k))
			e.bytes([]byte(r.Labels[k]))
		}
		spec, err := json.Marshal(r.Spec)
		if err != nil {
			// Stored specs were decoded from JSON, so this cannot happen;
			// fold the error in rather than hide the resource.
			spec = []byte(fmt.Sprintf("!error: %v", err))
		}
		e.bytes(spec)
	}
	return hex.EncodeToString(h.Sum(nil))
}
