package fsm

import (
	"cmp"
	"slices"
	"sync/atomic"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Cluster markers: facts about the cluster's history that are part of the
// replicated state (snapshots and the digest include them).
const markerDefaultMeshCreated = "default-mesh-created"

// bucket holds the resources of one (type, mesh) or one (mesh, service).
// Stored resources are immutable, so readers may keep the pointers.
type bucket struct {
	byName map[string]*resource.Resource
	// sorted caches byName's values sorted by name; nil when stale. Readers
	// fill it under the state's read lock (racing readers compute the same
	// slice), writers clear it under the write lock.
	sorted atomic.Pointer[[]*resource.Resource]
}

func newBucket() *bucket { return &bucket{byName: map[string]*resource.Resource{}} }

func (b *bucket) set(r *resource.Resource) {
	b.byName[r.Name] = r
	b.sorted.Store(nil)
}

func (b *bucket) remove(name string) {
	delete(b.byName, name)
	b.sorted.Store(nil)
}

// sortedView returns the cached sorted slice; callers must not modify it.
func (b *bucket) sortedView() []*resource.Resource {
	if p := b.sorted.Load(); p != nil {
		return *p
	}
	s := make([]*resource.Resource, 0, len(b.byName))
	for _, r := range b.byName {
		s = append(s, r)
	}
	slices.SortFunc(s, func(a, b *resource.Resource) int { return cmp.Compare(a.Name, b.Name) })
	b.sorted.Store(&s)
	return s
}

type serviceKey struct{ mesh, service string }

// state is the indexed store. It is not safe for concurrent use by itself:
// the FSM guards it.
type state struct {
	byKey     map[resource.Key]*resource.Resource
	byType    map[resource.Type]map[string]*bucket // type -> mesh -> bucket
	byService map[serviceKey]*bucket               // Dataplanes by (mesh, kuma.io/service)
	markers   map[string]string
}

func newState() *state {
	return &state{
		byKey:     map[resource.Key]*resource.Resource{},
		byType:    map[resource.Type]map[string]*bucket{},
		byService: map[serviceKey]*bucket{},
		markers:   map[string]string{},
	}
}

// put stores r, replacing any resource with the same key.
func (s *state) put(r *resource.Resource) {
	k := r.Key()
	if old, ok := s.byKey[k]; ok {
		s.unindexServices(old)
	}
	s.byKey[k] = r
	meshes := s.byType[k.Type]
	if meshes == nil {
		meshes = map[string]*bucket{}
		s.byType[k.Type] = meshes
	}
	b := meshes[k.Mesh]
	if b == nil {
		b = newBucket()
		meshes[k.Mesh] = b
	}
	b.set(r)
	s.indexServices(r)
}

// remove deletes k and returns what was stored.
func (s *state) remove(k resource.Key) (*resource.Resource, bool) {
	old, ok := s.byKey[k]
	if !ok {
		return nil, false
	}
	delete(s.byKey, k)
	if meshes := s.byType[k.Type]; meshes != nil {
		if b := meshes[k.Mesh]; b != nil {
			b.remove(k.Name)
			if len(b.byName) == 0 {
				delete(meshes, k.Mesh)
			}
		}
		if len(meshes) == 0 {
			delete(s.byType, k.Type)
		}
	}
	s.unindexServices(old)
	return old, true
}

func (s *state) indexServices(r *resource.Resource) {
	if r.Type != dataplaneType {
		return
	}
	for _, svc := range activeSchema.dataplaneServices(r) {
		sk := serviceKey{r.Mesh, svc}
		b := s.byService[sk]
		if b == nil {
			b = newBucket()
			s.byService[sk] = b
		}
		b.set(r)
	}
}

func (s *state) unindexServices(r *resource.Resource) {
	if r.Type != dataplaneType {
		return
	}
	// Stored resources are immutable, so this yields the services r was indexed under.
	for _, svc := range activeSchema.dataplaneServices(r) {
		sk := serviceKey{r.Mesh, svc}
		if b := s.byService[sk]; b != nil {
			b.remove(r.Name)
			if len(b.byName) == 0 {
				delete(s.byService, sk)
			}
		}
	}
}

// inMesh returns the keys of every mesh-scoped resource in mesh, sorted.
func (s *state) inMesh(mesh string) []resource.Key {
	var keys []resource.Key
	for t, meshes := range s.byType {
		if b := meshes[mesh]; b != nil && t != meshType {
			for name := range b.byName {
				keys = append(keys, resource.Key{Type: t, Mesh: mesh, Name: name})
			}
		}
	}
	slices.SortFunc(keys, compareKeys)
	return keys
}

// list returns the resources of type t (in mesh, or every mesh when mesh is ""), sorted by (mesh, name).
func (s *state) list(t resource.Type, mesh string) []*resource.Resource {
	meshes := s.byType[t]
	if mesh != "" {
		b := meshes[mesh]
		if b == nil {
			return nil
		}
		return slices.Clone(b.sortedView())
	}
	names := make([]string, 0, len(meshes))
	n := 0
	for m, b := range meshes {
		names = append(names, m)
		n += len(b.byName)
	}
	slices.Sort(names)
	out := make([]*resource.Resource, 0, n)
	for _, m := range names {
		out = append(out, meshes[m].sortedView()...)
	}
	return out
}

func compareKeys(a, b resource.Key) int {
	if c := cmp.Compare(a.Type, b.Type); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Mesh, b.Mesh); c != 0 {
		return c
	}
	return cmp.Compare(a.Name, b.Name)
}

func compareResources(a, b *resource.Resource) int { return compareKeys(a.Key(), b.Key()) }
