package fsm

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

func TestApplyPutDelete(t *testing.T) {
	f, rec := newTestFSM(t)
	a := &applier{t: t, f: f}
	a.mustApply(putCmd(mesh("m1"), nil, t0))
	dpKey := resource.Key{Type: dataplaneType, Mesh: "m1", Name: "dp1"}

	type step struct {
		name    string
		entry   []byte
		wantErr error
		check   func(t *testing.T, res *Result)
	}
	t1, t2 := t0.Add(time.Second), t0.Add(2*time.Second)
	steps := []step{
		{name: "mesh missing", entry: putCmd(dataplane("nope", "dp1", "1.1.1.1"), nil, t1), wantErr: ErrMeshNotFound},
		{name: "invalid spec", entry: putCmd(dataplane("m1", "dp1", ""), nil, t1), wantErr: resource.ValidationErrors{}},
		{name: "unknown type", entry: putCmd(&resource.Resource{Meta: resource.Meta{Type: "Nope", Name: "x"}, Spec: &testMeshSpec{}}, nil, t1), wantErr: ErrMalformed},
		{name: "mesh on global", entry: putCmd(&resource.Resource{Meta: resource.Meta{Type: meshType, Mesh: "m1", Name: "x"}, Spec: &testMeshSpec{}}, nil, t1), wantErr: resource.ValidationErrors{}},
		{name: "conditional on missing", entry: putCmd(dataplane("m1", "dp1", "1.1.1.1"), u64(7), t1), wantErr: ErrConflict},
		{name: "create if absent", entry: putCmd(dataplane("m1", "dp1", "1.1.1.1", "web"), u64(0), t1), check: func(t *testing.T, res *Result) {
			if !res.Created || res.Resource.Version != res.Index || !res.Resource.CreationTime.Equal(t1) || !res.Resource.ModificationTime.Equal(t1) {
				t.Fatalf("bad result %+v", res.Resource.Meta)
			}
		}},
		{name: "create again", entry: putCmd(dataplane("m1", "dp1", "1.1.1.1"), u64(0), t1), wantErr: ErrAlreadyExists},
		{name: "wrong version", entry: putCmd(dataplane("m1", "dp1", "1.1.1.2"), u64(1), t2), wantErr: ErrConflict},
		{name: "right version", entry: putCmd(dataplane("m1", "dp1", "1.1.1.2", "api"), u64(7), t2), check: func(t *testing.T, res *Result) {
			if res.Created || res.Resource.Version != 10 || !res.Resource.CreationTime.Equal(t1) || !res.Resource.ModificationTime.Equal(t2) {
				t.Fatalf("bad result %+v", res.Resource.Meta)
			}
			if got := f.DataplanesByService("m1", "web"); len(got) != 0 {
				t.Fatalf("stale service index: %v", got)
			}
			if got := f.DataplanesByService("m1", "api"); len(got) != 1 || got[0].Name != "dp1" {
				t.Fatalf("service index: %v", got)
			}
		}},
		{name: "delete wrong version", entry: deleteCmd(dpKey, 3, t2), wantErr: ErrConflict},
		{name: "delete missing", entry: deleteCmd(resource.Key{Type: dataplaneType, Mesh: "m1", Name: "zz"}, 0, t2), wantErr: ErrNotFound},
		{name: "delete in missing mesh", entry: deleteCmd(resource.Key{Type: dataplaneType, Mesh: "zz", Name: "zz"}, 0, t2), wantErr: ErrMeshNotFound},
		{name: "delete", entry: deleteCmd(dpKey, 10, t2), check: func(t *testing.T, res *Result) {
			if _, ok := f.Get(dpKey); ok {
				t.Fatal("still there")
			}
			if got := f.DataplanesByService("m1", "api"); len(got) != 0 {
				t.Fatalf("stale service index: %v", got)
			}
		}},
		{name: "garbage", entry: []byte("hello world"), wantErr: ErrMalformed},
		{name: "empty", entry: nil, wantErr: ErrMalformed},
	}
	for _, s := range steps {
		before := f.Digest()
		res := a.apply(s.entry)
		if f.AppliedIndex() != a.idx || res.Index != a.idx {
			t.Fatalf("%s: applied index %d, result %d, want %d", s.name, f.AppliedIndex(), res.Index, a.idx)
		}
		switch want := s.wantErr.(type) {
		case nil:
			if res.Err != nil {
				t.Fatalf("%s: %v", s.name, res.Err)
			}
		case resource.ValidationErrors:
			var v resource.ValidationErrors
			if !errors.As(res.Err, &v) || len(v) == 0 {
				t.Fatalf("%s: want validation errors, got %v", s.name, res.Err)
			}
		default:
			if !errors.Is(res.Err, want) {
				t.Fatalf("%s: want %v, got %v", s.name, want, res.Err)
			}
		}
		if res.Err != nil && f.Digest() != before {
			t.Fatalf("%s: rejected entry changed the state", s.name)
		}
		if s.check != nil {
			s.check(t, res)
		}
	}
	if rec.count() != 0 {
		t.Fatalf("OnFatal called: %v", rec.errs)
	}
}

func TestStoredResourceNotShared(t *testing.T) {
	f, _ := newTestFSM(t)
	a := &applier{t: t, f: f}
	a.mustApply(putCmd(mesh("m1"), nil, t0))
	first := a.mustApply(putCmd(dataplane("m1", "dp", "1.1.1.1"), nil, t0)).Resource
	a.mustApply(putCmd(dataplane("m1", "dp", "2.2.2.2"), nil, t0.Add(time.Second)))
	if first.Version != 2 || first.Spec.(*testDataplaneSpec).Address != "1.1.1.1" {
		t.Fatalf("earlier stored resource was mutated: %+v", first)
	}
}

func TestMeshCascade(t *testing.T) {
	f, _ := newTestFSM(t)
	a := &applier{t: t, f: f}
	a.mustApply(putCmd(mesh("m1"), nil, t0))
	a.mustApply(putCmd(mesh("m2"), nil, t0))
	for _, n := range []string{"c", "a", "b"} {
		a.mustApply(putCmd(dataplane("m1", n, "1.1.1.1", "web"), nil, t0))
		a.mustApply(putCmd(policy("m1", n, "r"), nil, t0))
		a.mustApply(putCmd(dataplane("m2", n, "1.1.1.1", "web"), nil, t0))
	}
	sub := f.Subscribe()
	defer sub.Close()
	a.mustApply(deleteCmd(meshKey("m1"), 0, t0))
	if got := f.Count(); got != 1+3 {
		t.Fatalf("count %d", got)
	}
	if got := f.List(dataplaneType, ""); len(got) != 3 || got[0].Mesh != "m2" {
		t.Fatalf("list: %v", got)
	}
	if got := f.DataplanesByService("m1", "web"); len(got) != 0 {
		t.Fatalf("service index kept deleted: %v", got)
	}
	b := sub.Next()
	if len(b.Changes) != 7 || b.Reset {
		t.Fatalf("batch: %+v", b)
	}
	// Recreating the mesh does not resurrect anything.
	a.mustApply(putCmd(mesh("m1"), nil, t0))
	if got := f.List(policyType, "m1"); len(got) != 0 {
		t.Fatalf("resurrected: %v", got)
	}
}

func TestEnsureDefaultMeshOnce(t *testing.T) {
	f, _ := newTestFSM(t)
	a := &applier{t: t, f: f}
	res := a.mustApply(ensureCmd(t0))
	if !res.Created || res.Resource.Name != "default" || !res.Resource.CreationTime.Equal(t0) {
		t.Fatalf("first: %+v", res)
	}
	if res := a.mustApply(ensureCmd(t0)); res.Created {
		t.Fatal("created twice")
	}
	a.mustApply(deleteCmd(meshKey("default"), 0, t0))
	if res := a.mustApply(ensureCmd(t0)); res.Created {
		t.Fatal("re-created after user deletion")
	}
	if _, ok := f.Get(meshKey("default")); ok {
		t.Fatal("default mesh came back")
	}
	if v, ok := f.Marker(markerDefaultMeshCreated); !ok || v == "" {
		t.Fatal("marker not set")
	}
}

func TestUnsupportedEntryIsFatal(t *testing.T) {
	valid := putCmd(mesh("x"), nil, t0)
	cases := map[string][]byte{
		"unknown command type": append([]byte{envelopeMagic, envelopeVersion, 0, 99}, valid[4:]...),
		"newer envelope":       append([]byte{envelopeMagic, envelopeVersion + 1}, valid[2:]...),
		"newer payload":        append([]byte{envelopeMagic, envelopeVersion, 0, byte(CmdEnsureDefaultMesh)}, []byte(`{"v":2,"time":"2026-01-01T00:00:00Z","new":1}`)...),
	}
	for name, entry := range cases {
		t.Run(name, func(t *testing.T) {
			f, rec := newTestFSM(t)
			a := &applier{t: t, f: f}
			a.mustApply(putCmd(mesh("m1"), nil, t0))
			before := f.Digest()
			res := a.apply(entry)
			if rec.count() != 1 || !errors.Is(res.Err, ErrUnsupported) {
				t.Fatalf("fatal calls %d, err %v", rec.count(), res.Err)
			}
			if f.Digest() != before || f.AppliedIndex() != 2 {
				t.Fatal("state changed")
			}
		})
	}
}

func TestDeterminism(t *testing.T) {
	entries := [][]byte{
		ensureCmd(t0),
		putCmd(mesh("m1"), nil, t0),
		putCmd(dataplane("m1", "a", "1.1.1.1", "web"), nil, t0.Add(time.Millisecond)),
		putCmd(dataplane("m1", "a", "1.1.1.2", "web"), u64(99), t0),
		putCmd(policy("m1", "p", "x"), u64(0), t0.Add(time.Hour)),
		[]byte{envelopeMagic, 1, 0, 1, 5, 'x'},
		deleteCmd(resource.Key{Type: policyType, Mesh: "m1", Name: "p"}, 0, t0),
		putCmd(dataplane("m1", "b", "1.1.1.1", "api"), nil, t0.Add(time.Minute)),
	}
	f1, _ := newTestFSM(t)
	f2, _ := newTestFSM(t)
	for i, e := range entries {
		r1, r2 := f1.Apply(uint64(i+1), e), f2.Apply(uint64(i+1), e)
		if errString(r1.Err) != errString(r2.Err) || r1.Created != r2.Created {
			t.Fatalf("entry %d: results differ: %v / %v", i, r1, r2)
		}
	}
	if f1.Digest() != f2.Digest() {
		t.Fatal("digests differ")
	}
	f3, _ := newTestFSM(t)
	for i, e := range entries[:len(entries)-1] {
		f3.Apply(uint64(i+1), e)
	}
	if f3.Digest() == f1.Digest() {
		t.Fatal("digest ignores a change")
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestWaitApplied(t *testing.T) {
	f, _ := newTestFSM(t)
	done := make(chan error, 1)
	go func() { done <- f.WaitApplied(context.Background(), 3) }()
	f.AdvanceIndex(1)
	f.Apply(2, []byte("junk"))
	select {
	case err := <-done:
		t.Fatalf("returned early: %v", err)
	default:
	}
	f.AdvanceIndex(3)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.WaitApplied(ctx, 10); !errors.Is(err, context.Canceled) {
		t.Fatalf("want canceled, got %v", err)
	}
	if err := f.WaitApplied(ctx, 2); err != nil {
		t.Fatalf("already applied: %v", err)
	}
}

func TestWatchCoalescing(t *testing.T) {
	f, _ := newTestFSM(t)
	a := &applier{t: t, f: f}
	a.mustApply(putCmd(mesh("m1"), nil, t0))
	sub := f.Subscribe()
	defer sub.Close()
	for i := 0; i < 5; i++ {
		a.mustApply(putCmd(dataplane("m1", "a", "1.1.1.1"), nil, t0))
	}
	a.mustApply(deleteCmd(resource.Key{Type: dataplaneType, Mesh: "m1", Name: "a"}, 0, t0))
	a.mustApply(putCmd(policy("m1", "p", "r"), nil, t0))
	select {
	case <-sub.C:
	default:
		t.Fatal("not signalled")
	}
	b := sub.Next()
	want := []Change{
		{Key: resource.Key{Type: dataplaneType, Mesh: "m1", Name: "a"}, Deleted: true, Index: 7},
		{Key: resource.Key{Type: policyType, Mesh: "m1", Name: "p"}, Index: 8},
	}
	if b.Reset || b.Index != 8 || len(b.Changes) != 2 || b.Changes[0] != want[0] || b.Changes[1] != want[1] {
		t.Fatalf("batch %+v", b)
	}
	if b := sub.Next(); len(b.Changes) != 0 || b.Reset {
		t.Fatalf("second batch not empty: %+v", b)
	}
}

func TestSlowWatcherDoesNotBlockApply(t *testing.T) {
	f, _ := newTestFSM(t)
	a := &applier{t: t, f: f}
	a.mustApply(putCmd(mesh("m1"), nil, t0))
	sub := f.Subscribe() // never read
	defer sub.Close()
	closed := f.Subscribe()
	closed.Close()
	for i := 0; i < maxPendingChanges+10; i++ {
		a.mustApply(putCmd(policy("m1", "p"+itoa(i), "r"), nil, t0))
	}
	b := sub.Next()
	if !b.Reset || len(b.Changes) != 0 {
		t.Fatalf("want collapsed reset, got %d changes reset=%v", len(b.Changes), b.Reset)
	}
	if b := closed.Next(); b.Reset || len(b.Changes) != 0 {
		t.Fatalf("closed subscription got changes")
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{digits[i%10]}, b...)
	}
	return string(b)
}

func TestListSorted(t *testing.T) {
	f, _ := newTestFSM(t)
	a := &applier{t: t, f: f}
	for _, m := range []string{"b", "a"} {
		a.mustApply(putCmd(mesh(m), nil, t0))
		for _, n := range []string{"z", "x", "y"} {
			a.mustApply(putCmd(policy(m, n, "r"), nil, t0))
		}
	}
	got := f.List(policyType, "")
	var names []string
	for _, r := range got {
		names = append(names, r.Mesh+"/"+r.Name)
	}
	want := "a/x a/y a/z b/x b/y b/z"
	if s := join(names); s != want {
		t.Fatalf("got %s", s)
	}
	got[0] = nil // the caller owns the slice
	if f.List(policyType, "a")[0] == nil {
		t.Fatal("List shares its slice")
	}
}

func join(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}
