package fsm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// TestWithResourcePackage runs the real resource types through the log,
// the service index and a snapshot round trip.
func TestWithResourcePackage(t *testing.T) {
	activeSchema = resourceSchema{}
	defer func() { activeSchema = testSchema{} }()

	decode := func(doc string) *resource.Resource {
		t.Helper()
		r, err := resource.Decode([]byte(doc), resource.JSON)
		if err != nil {
			t.Fatalf("decode %s: %v", doc, err)
		}
		resource.Default(r)
		return r
	}
	f, rec := newTestFSM(t)
	a := &applier{t: t, f: f}
	if res := a.mustApply(ensureCmd(t0)); !res.Created {
		t.Fatal("default mesh not created")
	}
	dp := decode(`{"type":"Dataplane","mesh":"default","name":"web-1","networking":{"address":"10.0.0.1","inbound":[{"port":8080,"tags":{"kuma.io/service":"web"}}]}}`)
	a.mustApply(putCmd(dp, u64(0), t0))
	if got := f.DataplanesByService("default", "web"); len(got) != 1 || got[0].Name != "web-1" {
		t.Fatalf("service index: %v", got)
	}
	bad := decode(`{"type":"Dataplane","mesh":"default","name":"web-2","networking":{"address":"10.0.0.1","inbound":[{"port":8080,"tags":{"kuma.io/service":"web"}}]}}`)
	bad.Spec.(*resource.DataplaneSpec).Networking.Address = ""
	var verrs resource.ValidationErrors
	if res := a.apply(putCmd(bad, nil, t0)); !errors.As(res.Err, &verrs) {
		t.Fatalf("want validation errors, got %v", res.Err)
	}

	var buf bytes.Buffer
	if _, err := f.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	g, _ := newTestFSM(t)
	if err := g.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if g.Digest() != f.Digest() || len(g.DataplanesByService("default", "web")) != 1 {
		t.Fatal("restored state differs")
	}
	if rec.count() != 0 {
		t.Fatal("fatal")
	}
}
