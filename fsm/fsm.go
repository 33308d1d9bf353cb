package fsm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// FSM is the replicated state: an indexed in-memory store of resources.
//
// Writers (Apply, AdvanceIndex, Restore) are serialised by writeMu; readers
// take mu's read lock and get immutable pointers.
type FSM struct {
	log     *slog.Logger
	onFatal func(error)

	writeMu sync.Mutex
	mu      struct {
		sync.RWMutex
		st *state
	}
	applied atomic.Uint64
	wait    struct {
		sync.Mutex
		ch chan struct{} // closed and cleared when AppliedIndex advances; nil when nobody waits
	}
	subs struct {
		sync.Mutex
		set map[*Subscription]struct{}
	}
}

// New returns an empty FSM.
func New(opts Options) *FSM {
	log := opts.Logger
	if log == nil {
		log = slog.Default().With("component", "fsm")
	}
	f := &FSM{log: log, onFatal: opts.OnFatal}
	if f.onFatal == nil {
		f.onFatal = defaultOnFatal(log)
	}
	f.mu.st = newState()
	f.subs.set = map[*Subscription]struct{}{}
	return f
}

// Apply applies one log entry. It never panics and never blocks on watchers.
// Every call advances AppliedIndex, including rejected entries.
func (f *FSM) Apply(index uint64, data []byte) (res *Result) {
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	defer f.advance(index)
	defer func() {
		if p := recover(); p != nil {
			err := fmt.Errorf("fsm: panic applying entry %d: %v", index, p)
			f.fatal(err)
			res = &Result{Index: index, Err: err}
		}
	}()

	cmd, err := Decode(data)
	if err != nil {
		err = fmt.Errorf("apply entry %d: %w", index, err)
		if errors.Is(err, ErrUnsupported) {
			f.fatal(err)
		}
		return &Result{Index: index, Err: err}
	}
	var changes []Change
	switch cmd.Type {
	case CmdPut:
		res, changes = f.applyPut(index, cmd.Time, cmd.Put)
	case CmdDelete:
		res, changes = f.applyDelete(index, cmd.Delete)
	case CmdEnsureDefaultMesh:
		res, changes = f.applyEnsureDefaultMesh(index, cmd.Time)
	case CmdInsights:
		res, changes = f.applyInsights(index, cmd.Time, cmd.Insights)
	case CmdDeregister:
		res, changes = f.applyDeregister(index, cmd.Time, cmd.Deregister)
	default:
		// Decode knows every type in the table; reaching here is a bug.
		err := fmt.Errorf("apply entry %d: %w: no apply function for command type %d", index, ErrUnsupported, cmd.Type)
		f.fatal(err)
		return &Result{Index: index, Err: err}
	}
	f.publish(changes)
	return res
}

// AdvanceIndex records that a raft entry which is not a command
// (configuration change, no-op, barrier) was applied.
func (f *FSM) AdvanceIndex(index uint64) {
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	f.advance(index)
}

func (f *FSM) fatal(err error) {
	defer func() {
		// A panicking OnFatal must not break Apply's no-panic promise.
		if p := recover(); p != nil {
			f.log.Error("OnFatal panicked", "err", err, "panic", p)
		}
	}()
	f.onFatal(err)
}

// checkMeta checks what decides where a resource is stored; resource.Validate
// does the rest.
func checkMeta(r *resource.Resource) (*resource.Descriptor, resource.ValidationErrors) {
	var verrs resource.ValidationErrors
	d, ok := activeSchema.descriptor(r.Type)
	if !ok {
		verrs.Add("type", "unknown type %q", r.Type)
		return nil, verrs
	}
	if r.Name == "" {
		verrs.Add("name", "must not be empty")
	}
	switch d.Scope {
	case resource.ScopeMesh:
		if r.Mesh == "" {
			verrs.Add("mesh", "must not be empty")
		}
	case resource.ScopeGlobal:
		if r.Mesh != "" {
			verrs.Add("mesh", "must be empty for a %s", r.Type)
		}
	}
	return d, verrs
}

func meshKey(name string) resource.Key { return resource.Key{Type: meshType, Name: name} }

func (f *FSM) applyPut(index uint64, t time.Time, p *PutCommand) (*Result, []Change) {
	in := p.Resource
	verrs := activeSchema.validate(in)
	var d *resource.Descriptor
	if len(verrs) == 0 {
		// resource.Validate covers these too; this guards the storage layout.
		d, verrs = checkMeta(in)
	}
	if len(verrs) > 0 {
		return &Result{Index: index, Err: verrs}, nil
	}
	k := in.Key()

	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.mu.st
	if d.Scope == resource.ScopeMesh {
		if _, ok := st.byKey[meshKey(k.Mesh)]; !ok {
			return &Result{Index: index, Err: fmt.Errorf("put %s: mesh %q: %w", k, k.Mesh, ErrMeshNotFound)}, nil
		}
	}
	old, exists := st.byKey[k]
	if p.IfVersion != nil {
		want := *p.IfVersion
		switch {
		case want == 0 && exists:
			return &Result{Index: index, Err: fmt.Errorf("put %s: %w", k, ErrAlreadyExists)}, nil
		case want != 0 && !exists:
			return &Result{Index: index, Err: fmt.Errorf("put %s: expected version %d, resource does not exist: %w", k, want, ErrConflict)}, nil
		case want != 0 && old.Version != want:
			return &Result{Index: index, Err: fmt.Errorf("put %s: expected version %d, current %d: %w", k, want, old.Version, ErrConflict)}, nil
		}
	}
	// The decoded resource belongs to this entry alone; build the stored copy
	// with meta set from the log, never from the client.
	stored := &resource.Resource{Meta: in.Meta, Spec: in.Spec}
	if len(stored.Labels) == 0 {
		stored.Labels = nil
	}
	stored.Version = index
	stored.ModificationTime = t
	stored.CreationTime = t
	if exists {
		stored.CreationTime = old.CreationTime
	}
	st.put(stored)
	st.touch(index, old, stored)
	return &Result{Index: index, Resource: stored, Created: !exists}, []Change{{Key: k, Index: index}}
}

func (f *FSM) applyDelete(index uint64, d *DeleteCommand) (*Result, []Change) {
	k := d.Key
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.mu.st
	if k.Type != meshType && k.Mesh != "" {
		if _, ok := st.byKey[meshKey(k.Mesh)]; !ok {
			return &Result{Index: index, Err: fmt.Errorf("delete %s: mesh %q: %w", k, k.Mesh, ErrMeshNotFound)}, nil
		}
	}
	old, ok := st.byKey[k]
	if !ok {
		return &Result{Index: index, Err: fmt.Errorf("delete %s: %w", k, ErrNotFound)}, nil
	}
	if d.IfVersion != 0 && old.Version != d.IfVersion {
		return &Result{Index: index, Err: fmt.Errorf("delete %s: expected version %d, current %d: %w", k, d.IfVersion, old.Version, ErrConflict)}, nil
	}
	var changes []Change
	if k.Type == meshType && k.Mesh == "" {
		for _, ck := range st.inMesh(k.Name) {
			if removed, ok := st.remove(ck); ok {
				st.touch(index, removed, nil)
			}
			changes = append(changes, Change{Key: ck, Deleted: true, Index: index})
		}
	}
	if k.Type == dataplaneType {
		// A Dataplane takes its insight with it.
		return &Result{Index: index}, append(changes, f.removeDataplane(index, k)...)
	}
	st.remove(k)
	st.touch(index, old, nil)
	changes = append(changes, Change{Key: k, Deleted: true, Index: index})
	return &Result{Index: index}, changes
}

func (f *FSM) applyEnsureDefaultMesh(index uint64, t time.Time) (*Result, []Change) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.mu.st
	k := meshKey(defaultMesh)
	if st.markers[markerDefaultMeshCreated] != "" {
		return &Result{Index: index, Resource: st.byKey[k]}, nil
	}
	if existing, ok := st.byKey[k]; ok {
		// A user created it first; the marker still records that the
		// default mesh exists once for this cluster.
		st.markers[markerDefaultMeshCreated] = "true"
		return &Result{Index: index, Resource: existing}, nil
	}
	d, ok := activeSchema.descriptor(meshType)
	if !ok || d.NewSpec == nil {
		return &Result{Index: index, Err: fmt.Errorf("ensure default mesh: resource type %q is not registered", meshType)}, nil
	}
	m := &resource.Resource{
		Meta: resource.Meta{Type: meshType, Name: defaultMesh, CreationTime: t, ModificationTime: t, Version: index},
		Spec: d.NewSpec(),
	}
	st.put(m)
	st.touch(index, nil, m)
	st.markers[markerDefaultMeshCreated] = "true"
	return &Result{Index: index, Resource: m, Created: true}, []Change{{Key: k, Index: index}}
}

// advance sets AppliedIndex (it never goes backwards) and wakes WaitApplied callers.
func (f *FSM) advance(index uint64) {
	if index > f.applied.Load() {
		f.applied.Store(index)
	}
	f.wait.Lock()
	if f.wait.ch != nil {
		close(f.wait.ch)
		f.wait.ch = nil
	}
	f.wait.Unlock()
}

// AppliedIndex is the index of the last entry applied (or restored).
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// WaitApplied blocks until AppliedIndex() >= index or ctx ends.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	for {
		f.wait.Lock()
		if f.applied.Load() >= index {
			f.wait.Unlock()
			return nil
		}
		if f.wait.ch == nil {
			f.wait.ch = make(chan struct{})
		}
		ch := f.wait.ch
		f.wait.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for applied index %d (at %d): %w", index, f.applied.Load(), ctx.Err())
		}
	}
}

// Get returns one resource. The result must not be modified.
func (f *FSM) Get(k resource.Key) (*resource.Resource, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	r, ok := f.mu.st.byKey[k]
	return r, ok
}

// List returns resources of a type sorted by (mesh, name); mesh "" means all
// meshes. The slice is the caller's; the resources must not be modified.
func (f *FSM) List(t resource.Type, mesh string) []*resource.Resource {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.mu.st.list(t, mesh)
}

// DataplanesByService returns the Dataplanes of a mesh with an inbound tagged
// kuma.io/service=service, sorted by name.
func (f *FSM) DataplanesByService(mesh, service string) []*resource.Resource {
	f.mu.RLock()
	defer f.mu.RUnlock()
	b := f.mu.st.byService[serviceKey{mesh, service}]
	if b == nil {
		return nil
	}
	return append([]*resource.Resource(nil), b.sortedView()...)
}

// Count returns the number of stored resources.
func (f *FSM) Count() int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return len(f.mu.st.byKey)
}

// Marker reports a cluster marker ("default-mesh-created"), for diagnostics.
func (f *FSM) Marker(name string) (string, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v, ok := f.mu.st.markers[name]
	return v, ok
}

// ChangeIndex is the index of the last entry that created, changed or
// deleted a resource of type t in mesh ("" for global types): 0 if none
// ever did. It never decreases and is the same on every replica at the same
// applied index, so xDS versions can be derived from it.
func (f *FSM) ChangeIndex(t resource.Type, mesh string) uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.mu.st.changeIndex(t, mesh)
}

// ServiceIndex is the index of the last entry that changed a Dataplane which
// provides (or provided) service in mesh.
func (f *FSM) ServiceIndex(mesh, service string) uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.mu.st.serviceIndex(mesh, service)
}

// Read calls fn with a consistent view of the state: no entry is applied
// while fn runs, so keep it short. The view must not be used after fn returns.
func (f *FSM) Read(fn func(v View)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(View{st: f.mu.st})
}

// View is a read-only, consistent view of the state (see FSM.Read).
type View struct{ st *state }

// Get returns one resource.
func (v View) Get(k resource.Key) (*resource.Resource, bool) {
	r, ok := v.st.byKey[k]
	return r, ok
}

// List returns resources of a type in mesh ("" = all), sorted by (mesh, name).
func (v View) List(t resource.Type, mesh string) []*resource.Resource { return v.st.list(t, mesh) }

// DataplanesByService returns the Dataplanes providing service in mesh, sorted by name.
// The slice must not be modified.
func (v View) DataplanesByService(mesh, service string) []*resource.Resource {
	b := v.st.byService[serviceKey{mesh, service}]
	if b == nil {
		return nil
	}
	return b.sortedView()
}

// ChangeIndex is FSM.ChangeIndex within the view.
func (v View) ChangeIndex(t resource.Type, mesh string) uint64 { return v.st.changeIndex(t, mesh) }

// ServiceIndex is FSM.ServiceIndex within the view.
func (v View) ServiceIndex(mesh, service string) uint64 { return v.st.serviceIndex(mesh, service) }
