package envoy

import (
	"cmp"
	"slices"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// timeouts are the TCP timeouts MeshTimeout sets.
type timeouts struct {
	connect time.Duration // cluster connect_timeout (> 0)
	idle    time.Duration // tcp_proxy idle_timeout (0 disables)
}

// timeoutRules are the MeshTimeouts that select one proxy, least specific
// first (Kuma's order: Mesh, MeshSubset, MeshService, MeshServiceSubset,
// Dataplane; then name), so later ones override earlier ones field by field.
type timeoutRules struct {
	specs []*resource.MeshTimeoutSpec
}

var kindRank = map[string]int{
	resource.KindMesh: 0, resource.KindMeshSubset: 1, resource.KindMeshService: 2,
	resource.KindMeshServiceSubset: 3, resource.KindDataplane: 4,
}

func newTimeoutRules(policies []*resource.Resource, dp *resource.DataplaneSpec, dpName string) *timeoutRules {
	type sel struct {
		rank int
		name string
		spec *resource.MeshTimeoutSpec
	}
	var sels []sel
	for _, p := range policies {
		spec, ok := p.Spec.(*resource.MeshTimeoutSpec)
		if !ok || spec == nil {
			continue
		}
		ref := spec.EffectiveTargetRef()
		rank, known := kindRank[ref.Kind]
		if !known || !selects(ref, dp, dpName) {
			continue
		}
		sels = append(sels, sel{rank, p.Name, spec})
	}
	slices.SortStableFunc(sels, func(a, b sel) int {
		if c := cmp.Compare(a.rank, b.rank); c != 0 {
			return c
		}
		return cmp.Compare(a.name, b.name)
	})
	r := &timeoutRules{}
	for _, s := range sels {
		r.specs = append(r.specs, s.spec)
	}
	return r
}

// selects reports whether a top-level targetRef selects the proxy.
func selects(ref resource.TargetRef, dp *resource.DataplaneSpec, dpName string) bool {
	switch ref.Kind {
	case resource.KindMesh:
		return true
	case resource.KindDataplane:
		return ref.Name == dpName
	}
	for _, in := range dp.Networking.Inbound {
		svc := in.Tags[resource.ServiceTag]
		switch ref.Kind {
		case resource.KindMeshSubset:
			if hasTags(in.Tags, ref.Tags) {
				return true
			}
		case resource.KindMeshService:
			if svc != "" && svc == ref.Name {
				return true
			}
		case resource.KindMeshServiceSubset:
			if svc != "" && svc == ref.Name && hasTags(in.Tags, ref.Tags) {
				return true
			}
		}
	}
	return false
}

func defaults() timeouts { return timeouts{connect: DefaultConnectTimeout, idle: DefaultIdleTimeout} }

func (t *timeouts) apply(c resource.MeshTimeoutConf) {
	p := c.Parsed()
	if p.ConnectionTimeout != nil && *p.ConnectionTimeout > 0 {
		t.connect = *p.ConnectionTimeout
	}
	if p.IdleTimeout != nil && *p.IdleTimeout >= 0 {
		t.idle = *p.IdleTimeout
	}
}

// to is the timeouts towards service svc: `to` entries for the whole mesh,
// then those naming svc.
func (r *timeoutRules) to(svc string) timeouts {
	t := defaults()
	for _, spec := range r.specs {
		for _, it := range spec.To {
			if it.TargetRef.Kind == resource.KindMesh {
				t.apply(it.Default)
			}
		}
		for _, it := range spec.To {
			if it.TargetRef.Kind == resource.KindMeshService && it.TargetRef.Name == svc {
				t.apply(it.Default)
			}
		}
	}
	return t
}

// from is the timeouts for traffic into the proxy's inbound of svc.
func (r *timeoutRules) from(string) timeouts {
	t := defaults()
	for _, spec := range r.specs {
		for _, it := range spec.From {
			if it.TargetRef.Kind == resource.KindMesh {
				t.apply(it.Default)
			}
		}
	}
	return t
}
