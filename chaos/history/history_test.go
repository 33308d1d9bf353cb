package history

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	r := NewRecorder()
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Go(func() {
			for i := range 25 {
				t0 := r.Now()
				r.Add(Op{Client: c, Kind: Write, Key: "k", Value: "v", Version: uint64(i + 1), Invoke: t0, Complete: r.Now(), Outcome: OK, Status: 200})
			}
		})
	}
	f := r.BeginFault(Fault{Nemesis: "kill", Targets: []string{"cp-1"}})
	r.SetFaultTargets(f, []string{"cp-2"}, "leader")
	if r.ActiveFaults() != 1 {
		t.Fatalf("active faults = %d", r.ActiveFaults())
	}
	r.EndFault(f, errors.New("restart failed"))
	wg.Wait()
	h := r.Snapshot()
	if len(h.Ops) != 100 || r.Count() != 100 {
		t.Fatalf("ops = %d", len(h.Ops))
	}
	for i := 1; i < len(h.Ops); i++ {
		if h.Ops[i].Invoke < h.Ops[i-1].Invoke {
			t.Fatal("not sorted by invocation")
		}
	}
	var buf bytes.Buffer
	if err := h.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Start.Equal(h.Start) || !reflect.DeepEqual(got.Ops, h.Ops) || !reflect.DeepEqual(got.Faults, h.Faults) {
		t.Fatalf("round trip changed the history")
	}
	if got.Faults[0].Targets[0] != "cp-2" || got.Faults[0].Error != "restart failed" || got.Faults[0].End == 0 {
		t.Errorf("fault = %+v", got.Faults[0])
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, in := range []string{"", "{}\n", "not json\n"} {
		if _, err := Decode(strings.NewReader(in)); err == nil {
			t.Errorf("Decode(%q) succeeded", in)
		}
	}
}
