package fsm

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

func fuzzFSM(t testing.TB) (*FSM, *fatalRecorder) {
	f, rec := newTestFSM(t)
	a := &applier{t: t, f: f}
	a.mustApply(ensureCmd(t0))
	a.mustApply(putCmd(mesh("m1"), nil, t0))
	a.mustApply(putCmd(dataplane("m1", "dp", "1.1.1.1", "web"), nil, t0))
	a.mustApply(putCmd(policy("m1", "p", "r"), nil, t0))
	return f, rec
}

func FuzzApply(f *testing.F) {
	for _, seed := range [][]byte{
		nil,
		[]byte("garbage"),
		ensureCmd(t0),
		putCmd(dataplane("m1", "dp", "2.2.2.2", "api"), u64(3), t0),
		putCmd(policy("m1", "q", "r"), u64(0), t0),
		putCmd(mesh("m2"), nil, t0),
		deleteCmd(meshKey("m1"), 0, t0),
		deleteCmd(resource.Key{Type: policyType, Mesh: "m1", Name: "p"}, 4, t0),
		{envelopeMagic, envelopeVersion, 0, 9},
		mustEncode(Command{Type: CmdInsights, Time: t0, Insights: &InsightsCommand{
			Reports: []InsightReport{{Mesh: "m1", Name: "dp", Subscription: &resource.DiscoverySubscription{ID: "s", ControlPlaneInstanceID: "cp-1", ConnectTime: t0, Generation: 1}}},
			Offline: []OfflineMark{{Replica: "cp-2"}}}}),
		mustEncode(Command{Type: CmdDeregister, Time: t0, Deregister: &DeregisterCommand{Key: resource.Key{Type: dataplaneType, Mesh: "m1", Name: "dp"}}}),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		f1, rec1 := fuzzFSM(t)
		f2, rec2 := fuzzFSM(t)
		before := f1.Digest()
		done := make(chan struct{})
		var r1, r2 *Result
		go func() {
			defer close(done)
			r1 = f1.Apply(5, data)
			r2 = f2.Apply(5, data)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Apply hung")
		}
		if r1 == nil || r2 == nil || r1.Index != 5 || f1.AppliedIndex() != 5 {
			t.Fatalf("bad results %v %v", r1, r2)
		}
		if errString(r1.Err) != errString(r2.Err) || r1.Created != r2.Created || rec1.count() != rec2.count() {
			t.Fatalf("replicas disagree: %v / %v", r1.Err, r2.Err)
		}
		if f1.Digest() != f2.Digest() {
			t.Fatal("replicas diverged")
		}
		if r1.Err != nil && f1.Digest() != before {
			t.Fatalf("rejected entry (%v) changed the state", r1.Err)
		}
		if rec1.count() > 0 && f1.Digest() != before {
			t.Fatal("fatal entry changed the state")
		}
		if err := f1.WaitApplied(context.Background(), 5); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzRestore feeds arbitrary bytes to Restore: it must never panic or hang,
// and a rejected snapshot must leave the current state exactly as it was.
func FuzzRestore(f *testing.F) {
	src, _ := fuzzFSM(f)
	var good bytes.Buffer
	snap := src.Snapshot()
	if _, err := snap.WriteTo(&good); err != nil {
		f.Fatal(err)
	}
	snap.Release()
	f.Add(good.Bytes())
	f.Add(good.Bytes()[:len(good.Bytes())/2])
	f.Add([]byte("KHFS"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		dst, _ := newTestFSM(t)
		a := &applier{t: t, f: dst}
		a.mustApply(putCmd(mesh("other"), nil, t0))
		before, idx := dst.Digest(), dst.AppliedIndex()
		done := make(chan error, 1)
		go func() { done <- dst.Restore(bytes.NewReader(data)) }()
		var err error
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Restore hung")
		}
		if err != nil && (dst.Digest() != before || dst.AppliedIndex() != idx) {
			t.Fatalf("rejected snapshot (%v) changed the state", err)
		}
		if err == nil && bytes.Equal(data, good.Bytes()) && dst.Digest() != src.Digest() {
			t.Fatal("restored state differs from the snapshot's source")
		}
	})
}

func mustEncode(c Command) []byte {
	b, err := Encode(c)
	if err != nil {
		panic(err)
	}
	return b
}

// FuzzCheck: Check never accepts an entry Decode calls unsupported (the
// proposer's gate of a rolling upgrade), and agrees on the type of every
// entry Decode accepts.
func FuzzCheck(f *testing.F) {
	newer := putCmd(mesh("m2"), nil, t0)
	newer = bytes.Replace(newer, []byte(`"v":1`), []byte(`"v":9`), 1)
	for _, seed := range [][]byte{
		nil,
		[]byte("garbage"),
		ensureCmd(t0),
		putCmd(mesh("m2"), u64(3), t0),
		newer,
		deleteCmd(meshKey("m1"), 0, t0),
		{envelopeMagic, envelopeVersion + 1, 0, 1},
		{envelopeMagic, envelopeVersion, 0, 99},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, cerr := Check(data)
		cmd, derr := Decode(data)
		if errors.Is(derr, ErrUnsupported) && !errors.Is(cerr, ErrUnsupported) {
			t.Fatalf("Decode: %v; Check: %v (must be unsupported)", derr, cerr)
		}
		if derr == nil && (cerr != nil || typ != cmd.Type) {
			t.Fatalf("Decode accepts a %s; Check: %v, %s", cmd.Type, cerr, typ)
		}
	})
}

func TestCheckRefusesNewerPut(t *testing.T) {
	newer := bytes.Replace(putCmd(mesh("m2"), nil, t0), []byte(`"v":1`), []byte(`"v":9`), 1)
	if _, err := Check(newer); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Check of a put with payload version 9: %v; want ErrUnsupported", err)
	}
	if typ, err := Check(putCmd(mesh("m2"), nil, t0)); err != nil || typ != CmdPut {
		t.Fatalf("Check of a put: %s, %v", typ, err)
	}
}
