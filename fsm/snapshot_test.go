package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func populate(t testing.TB, f *FSM, meshes, perMesh int) *applier {
	a := &applier{t: t, f: f}
	a.mustApply(ensureCmd(t0))
	for m := 0; m < meshes; m++ {
		mn := fmt.Sprintf("mesh-%d", m)
		a.mustApply(putCmd(mesh(mn), nil, t0))
		for i := 0; i < perMesh; i++ {
			at := t0.Add(time.Duration(i) * time.Millisecond)
			a.mustApply(putCmd(dataplane(mn, fmt.Sprintf("dp-%d", i), "10.0.0.1", fmt.Sprintf("svc-%d", i%7)), nil, at))
			if i%10 == 0 {
				r := policy(mn, fmt.Sprintf("p-%d", i), "r")
				r.Labels = map[string]string{"team": "x", "a": "b"}
				a.mustApply(putCmd(r, nil, at))
			}
		}
	}
	return a
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	f, _ := newTestFSM(t)
	populate(t, f, 3, 1000)
	sub := f.Subscribe()
	defer sub.Close()

	snap := f.Snapshot()
	var buf bytes.Buffer
	n, err := snap.WriteTo(&buf)
	snap.Release()
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo: %d %v (buffer %d)", n, err, buf.Len())
	}

	g, _ := newTestFSM(t)
	gsub := g.Subscribe()
	defer gsub.Close()
	if err := g.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if g.Digest() != f.Digest() || g.Count() != f.Count() || g.AppliedIndex() != f.AppliedIndex() {
		t.Fatalf("restored state differs: count %d/%d index %d/%d", g.Count(), f.Count(), g.AppliedIndex(), f.AppliedIndex())
	}
	for _, r := range f.List(dataplaneType, "") {
		got, ok := g.Get(r.Key())
		if !ok || got.Version != r.Version || !got.CreationTime.Equal(r.CreationTime) || !got.ModificationTime.Equal(r.ModificationTime) {
			t.Fatalf("%s: %+v vs %+v", r.Key(), got, r)
		}
	}
	if a, b := len(g.DataplanesByService("mesh-1", "svc-3")), len(f.DataplanesByService("mesh-1", "svc-3")); a != b || a == 0 {
		t.Fatalf("service index %d vs %d", a, b)
	}
	if v, _ := g.Marker(markerDefaultMeshCreated); v == "" {
		t.Fatal("marker lost")
	}
	if b := gsub.Next(); !b.Reset || b.Index != f.AppliedIndex() {
		t.Fatalf("watcher not reset: %+v", b)
	}
	// Taking the snapshot or writing it does not disturb the source.
	if b := sub.Next(); b.Reset || len(b.Changes) != 0 {
		t.Fatalf("source watcher saw %+v", b)
	}
}

func TestSnapshotIsPointInTime(t *testing.T) {
	f, _ := newTestFSM(t)
	a := populate(t, f, 1, 10)
	want := f.Digest()
	snap := f.Snapshot()
	defer snap.Release()
	a.mustApply(putCmd(policy("mesh-0", "later", "r"), nil, t0))
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	g, _ := newTestFSM(t)
	if err := g.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if g.Digest() != want {
		t.Fatal("snapshot saw a later write")
	}
}

func TestRestoreRejectsCorruption(t *testing.T) {
	f, _ := newTestFSM(t)
	populate(t, f, 1, 50)
	var buf bytes.Buffer
	if _, err := f.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x01
	newer := bytes.Clone(good)
	newer[5] = 9
	cases := map[string][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-10],
		"flipped":   flipped,
		"trailing":  append(bytes.Clone(good), 0),
		"magic":     append([]byte("XXXX"), good[4:]...),
		"version":   newer,
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			g, _ := newTestFSM(t)
			a := &applier{t: t, f: g}
			a.mustApply(putCmd(mesh("keep"), nil, t0))
			before := g.Digest()
			if err := g.Restore(bytes.NewReader(data)); err == nil {
				t.Fatal("corrupt snapshot restored")
			}
			if g.Digest() != before || g.AppliedIndex() != 1 {
				t.Fatal("failed restore changed the state")
			}
		})
	}
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after -= len(p); w.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

func TestSnapshotWriteError(t *testing.T) {
	f, _ := newTestFSM(t)
	populate(t, f, 1, 3000)
	if _, err := f.Snapshot().WriteTo(&failingWriter{after: 1000}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("want disk full, got %v", err)
	}
}

// Golden log entries: a newer binary must keep decoding them. Regenerate
// only when adding a new golden (never to paper over a decoding change):
// KUMA_HA_UPDATE_GOLDEN=1 go test ./fsm -run TestGoldenEntries
func TestGoldenEntries(t *testing.T) {
	r := dataplane("m1", "dp-1", "10.0.0.1", "web")
	r.Labels = map[string]string{"env": "prod"}
	cases := []struct {
		file string
		cmd  Command
	}{
		{"put_v1.bin", Command{Type: CmdPut, Time: t0, Put: &PutCommand{Resource: r, IfVersion: u64(5)}}},
		{"delete_v1.bin", Command{Type: CmdDelete, Time: t0, Delete: &DeleteCommand{Key: r.Key(), IfVersion: 9}}},
		{"ensure_default_mesh_v1.bin", Command{Type: CmdEnsureDefaultMesh, Time: t0}},
	}
	for _, c := range cases {
		path := "testdata/" + c.file
		if os.Getenv("KUMA_HA_UPDATE_GOLDEN") != "" {
			data, err := Encode(c.cmd)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(data)
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		if got.Type != c.cmd.Type || !got.Time.Equal(c.cmd.Time) {
			t.Fatalf("%s: got %+v", c.file, got)
		}
		switch c.cmd.Type {
		case CmdPut:
			p := got.Put
			if *p.IfVersion != 5 || p.Resource.Key() != r.Key() || p.Resource.Labels["env"] != "prod" ||
				p.Resource.Spec.(*testDataplaneSpec).Services[0] != "web" {
				t.Fatalf("put: %+v", p.Resource)
			}
		case CmdDelete:
			if *got.Delete != *c.cmd.Delete {
				t.Fatalf("delete: %+v", got.Delete)
			}
		}
		f, rec := newTestFSM(t)
		f.Apply(1, data)
		if rec.count() != 0 {
			t.Fatalf("%s: fatal", c.file)
		}
	}
}
