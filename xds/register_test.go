package xds

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// FuzzDecodeDataplane: whatever a proxy sends in node metadata is either a
// valid, labelled Dataplane for its node id or an InvalidArgument that says
// which field is wrong; never a panic.
func FuzzDecodeDataplane(f *testing.F) {
	f.Add(dpDoc("web-1", "10.0.0.1", "web", "backend"))
	f.Add("type: Dataplane\nname: web-1\nnetworking: {address: 10.0.0.1, inbound: [{port: 8080, tags: {kuma.io/service: web}}]}")
	f.Add(`{"type":"Mesh","name":"x"}`)
	f.Add("{")
	f.Fuzz(func(t *testing.T, doc string) {
		k := resource.Key{Type: resource.TypeDataplane, Mesh: "default", Name: "web-1"}
		r, err := decodeDataplane(k, []byte(doc))
		if err != nil {
			if status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() == "" {
				t.Fatalf("error is not an InvalidArgument with a message: %v", err)
			}
			return
		}
		if r.Key() != k || r.Labels[fsm.LabelRegisteredBy] != fsm.RegisteredByProxy || len(resource.Validate(r)) > 0 {
			t.Fatalf("accepted %s with labels %v", r.Key(), r.Labels)
		}
	})
}
