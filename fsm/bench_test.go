package fsm

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

func BenchmarkApplyPut(b *testing.B) {
	f, _ := newTestFSM(b)
	f.Apply(1, putCmd(mesh("m1"), nil, t0))
	entries := make([][]byte, 1000)
	for i := range entries {
		entries[i] = putCmd(dataplane("m1", fmt.Sprintf("dp-%d", i), "10.0.0.1", "web"), nil, t0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res := f.Apply(uint64(i+2), entries[i%len(entries)]); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
}

const benchDataplanes = 100_000

var big struct {
	once sync.Once
	f    *FSM
	snap []byte
}

// bigFSM holds 100k Dataplanes in 10 meshes, applied through the log path.
func bigFSM(b *testing.B) (*FSM, []byte) {
	big.once.Do(func() {
		f, _ := newTestFSM(b)
		idx := uint64(0)
		for m := 0; m < 10; m++ {
			idx++
			f.Apply(idx, putCmd(mesh(fmt.Sprintf("mesh-%d", m)), nil, t0))
		}
		for i := 0; i < benchDataplanes; i++ {
			idx++
			r := dataplane(fmt.Sprintf("mesh-%d", i%10), fmt.Sprintf("dp-%06d", i), "10.0.0.1", fmt.Sprintf("svc-%d", i%500))
			r.Labels = map[string]string{"kuma.io/zone": "zone-1", "team": "payments"}
			if res := f.Apply(idx, putCmd(r, nil, t0.Add(time.Duration(i)))); res.Err != nil {
				panic(res.Err)
			}
		}
		var buf bytes.Buffer
		if _, err := f.Snapshot().WriteTo(&buf); err != nil {
			panic(err)
		}
		big.f, big.snap = f, buf.Bytes()
	})
	return big.f, big.snap
}

func BenchmarkSnapshotWriteTo100k(b *testing.B) {
	f, snap := bigFSM(b)
	b.SetBytes(int64(len(snap)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := f.Snapshot()
		if _, err := s.WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
		s.Release()
	}
	b.StopTimer()
	logPeakRSS(b)
}

func BenchmarkRestore100k(b *testing.B) {
	f, snap := bigFSM(b)
	b.SetBytes(int64(len(snap)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g, _ := newTestFSM(b)
		if err := g.Restore(bytes.NewReader(snap)); err != nil {
			b.Fatal(err)
		}
		if g.Count() != f.Count() {
			b.Fatalf("count %d want %d", g.Count(), f.Count())
		}
	}
	b.StopTimer()
	logPeakRSS(b)
}

func BenchmarkList100k(b *testing.B) {
	f, _ := bigFSM(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if n := len(f.List(dataplaneType, "")); n != benchDataplanes {
			b.Fatal(n)
		}
	}
}

// logPeakRSS logs VmHWM (peak resident set size) where /proc exists.
func logPeakRSS(b *testing.B) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			b.Logf("peak RSS %s", strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")))
		}
	}
}

// BenchmarkRestore100kReal restores 100k real resource.Dataplane documents
// through resource.DecodeStored (the production codec).
func BenchmarkRestore100kReal(b *testing.B) {
	activeSchema = resourceSchema{}
	defer func() { activeSchema = testSchema{} }()
	f, _ := newTestFSM(b)
	idx := uint64(1)
	f.Apply(idx, ensureCmd(t0))
	for i := 0; i < benchDataplanes; i++ {
		idx++
		doc := fmt.Sprintf(`{"type":"Dataplane","mesh":"default","name":"dp-%06d","labels":{"team":"payments"},"networking":{"address":"10.%d.%d.%d","inbound":[{"port":8080,"servicePort":80,"tags":{"kuma.io/service":"svc-%d","kuma.io/protocol":"http"}}],"outbound":[{"port":10001,"tags":{"kuma.io/service":"backend"}}]}}`,
			i, i>>16&255, i>>8&255, i&255, i%500)
		r, err := resource.Decode([]byte(doc), resource.JSON)
		if err != nil {
			b.Fatal(err)
		}
		resource.Default(r)
		if res := f.Apply(idx, putCmd(r, nil, t0)); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
	var buf bytes.Buffer
	if _, err := f.Snapshot().WriteTo(&buf); err != nil {
		b.Fatal(err)
	}
	snap := buf.Bytes()
	b.SetBytes(int64(len(snap)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g, _ := newTestFSM(b)
		if err := g.Restore(bytes.NewReader(snap)); err != nil {
			b.Fatal(err)
		}
		if g.Count() != f.Count() {
			b.Fatalf("count %d want %d", g.Count(), f.Count())
		}
	}
	b.StopTimer()
	logPeakRSS(b)
}
