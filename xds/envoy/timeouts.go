package envoy

import (
	"cmp"
	"slices"
	"strconv"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Kuma's TCP timeouts where no MeshTimeout sets them (its MeshTimeout
// plugin's defaults).
const (
	DefaultConnectTimeout = 5 * time.Second
	DefaultIdleTimeout    = time.Hour
)

// tcpTimeouts are the two timeouts that matter for TCP.
type tcpTimeouts struct{ connect, idle time.Duration }

var defaultTimeouts = tcpTimeouts{connect: DefaultConnectTimeout, idle: DefaultIdleTimeout}

// partialTimeouts is a merge in progress: nil means not set yet.
type partialTimeouts struct{ connect, idle *time.Duration }

// merge overlays c on p, keeping only values Envoy accepts: a connect
// timeout above zero, an idle timeout of zero (disabled) or more.
func (p *partialTimeouts) merge(c partialTimeouts) {
	if c.connect != nil && *c.connect > 0 {
		p.connect = c.connect
	}
	if c.idle != nil && *c.idle >= 0 {
		p.idle = c.idle
	}
}

func (p partialTimeouts) resolve() tcpTimeouts {
	t := defaultTimeouts
	if p.connect != nil {
		t.connect = *p.connect
	}
	if p.idle != nil {
		t.idle = *p.idle
	}
	return t
}

func parseTimeouts(c resource.MeshTimeoutConf) partialTimeouts {
	var p partialTimeouts
	if d, ok := c.ConnectionTimeout.Get(); ok {
		p.connect = &d
	}
	if d, ok := c.IdleTimeout.Get(); ok {
		p.idle = &d
	}
	return p
}

// toItem is one "to" entry that can match a legacy service.
type toItem struct {
	all     bool   // targetRef kind Mesh
	service string // targetRef kind MeshService, by name
	conf    partialTimeouts
}

// timeoutPolicy is a MeshTimeout whose top-level targetRef selects the proxy.
type timeoutPolicy struct {
	name     string
	order    int               // specificity of the top-level targetRef, Kuma's kind order
	dpOrder  int               // among Dataplane targetRefs: name beats labels beats all, sectionName beats none
	inbounds []bool            // which inbounds (by index) it selects; nil for none
	from     []partialTimeouts // kind Mesh entries only
	to       []toItem
}

// Kuma's order of top-level targetRef kinds, least specific first.
var kindOrder = map[string]int{
	resource.KindMesh:              1,
	resource.KindDataplane:         2,
	resource.KindMeshSubset:        3,
	resource.KindMeshService:       5,
	resource.KindMeshServiceSubset: 8,
}

// timeoutRules answers which timeouts apply where for one proxy.
type timeoutRules struct {
	policies []timeoutPolicy // least specific first: later ones win a merge
	toCache  map[string]tcpTimeouts
}

func newTimeoutRules(policies []*resource.Resource, proxy *resource.Resource, dp *resource.DataplaneSpec) *timeoutRules {
	t := &timeoutRules{}
	for _, r := range policies {
		spec := r.Spec.(*resource.MeshTimeoutSpec) // checked by checkInput
		p, ok := selectTimeoutPolicy(r.Name, spec, proxy, dp)
		if ok {
			t.policies = append(t.policies, p)
		}
	}
	slices.SortStableFunc(t.policies, func(a, b timeoutPolicy) int {
		if c := cmp.Compare(a.order, b.order); c != 0 {
			return c
		}
		if c := cmp.Compare(a.dpOrder, b.dpOrder); c != 0 {
			return c
		}
		return cmp.Compare(b.name, a.name) // the lexicographically smaller name wins, so it goes last
	})
	return t
}

// selectTimeoutPolicy decides whether the policy applies to the proxy and to
// which of its inbounds, as Kuma's targetRef matcher does.
func selectTimeoutPolicy(name string, spec *resource.MeshTimeoutSpec, proxy *resource.Resource, dp *resource.DataplaneSpec) (timeoutPolicy, bool) {
	ref := spec.EffectiveTargetRef()
	order, known := kindOrder[ref.Kind]
	if !known || !proxyTypeSelected(ref.ProxyTypes, dp.IsGateway()) {
		return timeoutPolicy{}, false // MeshGateway and MeshHTTPRoute act on HTTP only
	}
	p := timeoutPolicy{name: name, order: order}
	ins := dp.Networking.Inbound
	selected := false
	for i := range ins {
		in := &ins[i]
		if in.State == resource.InboundIgnored || !refSelectsTags(ref, proxy, in.Tags) {
			continue
		}
		if ref.Kind == resource.KindDataplane && ref.SectionName != "" &&
			ref.SectionName != in.Name && ref.SectionName != strconv.FormatUint(uint64(in.Port), 10) {
			continue
		}
		if p.inbounds == nil {
			p.inbounds = make([]bool, len(ins))
		}
		p.inbounds[i] = true
		selected = true
	}
	if gw := dp.Networking.Gateway; gw != nil && !(ref.Kind == resource.KindDataplane && ref.SectionName != "") &&
		refSelectsTags(ref, proxy, gw.Tags) {
		selected = true
	}
	if !selected {
		return timeoutPolicy{}, false
	}
	if ref.Kind == resource.KindDataplane {
		switch {
		case ref.Name != "":
			p.dpOrder = 4
		case len(ref.Labels) > 0:
			p.dpOrder = 2
		}
		if ref.SectionName != "" {
			p.dpOrder++
		}
	}
	for _, f := range spec.From {
		if f.TargetRef.Kind == resource.KindMesh { // the only kind that means "all incoming traffic"
			p.from = append(p.from, parseTimeouts(f.Default))
		}
	}
	for _, to := range spec.To {
		tr := to.TargetRef
		switch {
		case tr.Kind == resource.KindMesh:
			p.to = append(p.to, toItem{all: true, conf: parseTimeouts(to.Default)})
		case tr.Kind == resource.KindMeshService && tr.Name != "" && len(tr.Labels) == 0 &&
			tr.SectionName == "" && tr.Namespace == "":
			// A legacy service by its kuma.io/service value. Labels, sectionName
			// or namespace refer to real MeshService resources, which this
			// generator does not know.
			p.to = append(p.to, toItem{service: tr.Name, conf: parseTimeouts(to.Default)})
		}
	}
	return p, true
}

// refSelectsTags reports whether a top-level targetRef selects an inbound (or
// gateway) with these tags of the proxy.
func refSelectsTags(ref resource.TargetRef, proxy *resource.Resource, tags map[string]string) bool {
	switch ref.Kind {
	case resource.KindMesh:
		return true
	case resource.KindMeshSubset:
		return selectorMatches(ref.Tags, tags)
	case resource.KindMeshService:
		return ref.Name != "" && tags[resource.ServiceTag] == ref.Name
	case resource.KindMeshServiceSubset:
		return ref.Name != "" && tags[resource.ServiceTag] == ref.Name && selectorMatches(ref.Tags, tags)
	case resource.KindDataplane:
		if ref.Name != "" && ref.Name != proxy.Name {
			return false
		}
		if ref.Namespace != "" && ref.Namespace != proxy.Labels["k8s.kuma.io/namespace"] {
			return false
		}
		return selectorMatches(ref.Labels, proxy.Labels)
	}
	return false
}

func proxyTypeSelected(types []string, gateway bool) bool {
	if len(types) == 0 {
		return true
	}
	want := "Sidecar"
	if gateway {
		want = "Gateway"
	}
	return slices.Contains(types, want)
}

// to returns the timeouts for traffic to service.
func (t *timeoutRules) to(service string) tcpTimeouts {
	if v, ok := t.toCache[service]; ok {
		return v
	}
	var acc partialTimeouts
	for i := range t.policies {
		for _, it := range t.policies[i].to {
			if it.all || it.service == service {
				acc.merge(it.conf)
			}
		}
	}
	v := acc.resolve()
	if t.toCache == nil {
		t.toCache = make(map[string]tcpTimeouts)
	}
	t.toCache[service] = v
	return v
}

// from returns the timeouts for traffic into the inbound at index i.
func (t *timeoutRules) from(i int) tcpTimeouts {
	var acc partialTimeouts
	for j := range t.policies {
		p := &t.policies[j]
		if i >= len(p.inbounds) || !p.inbounds[i] {
			continue
		}
		for _, f := range p.from {
			acc.merge(f)
		}
	}
	return acc.resolve()
}
