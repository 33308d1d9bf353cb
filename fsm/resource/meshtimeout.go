package resource

import "time"

// TypeMeshTimeout sets connection and HTTP timeouts on the targeted proxies.
const TypeMeshTimeout Type = "MeshTimeout"

func init() {
	register(&Descriptor{
		Type: TypeMeshTimeout, ShortName: "mt", Plural: "meshtimeouts", Scope: ScopeMesh,
		SpecUnderSpecField: true, NewSpec: func() Spec { return &MeshTimeoutSpec{} },
	})
}

type MeshTimeoutSpec struct {
	// TargetRef defaults to kind Mesh when absent.
	TargetRef *TargetRef        `json:"targetRef,omitempty"`
	From      []MeshTimeoutItem `json:"from,omitempty"`
	To        []MeshTimeoutItem `json:"to,omitempty"`
}

// MeshTimeoutItem is one entry of from or to.
type MeshTimeoutItem struct {
	TargetRef TargetRef       `json:"targetRef"`
	Default   MeshTimeoutConf `json:"default"`
}

type MeshTimeoutConf struct {
	ConnectionTimeout *Duration        `json:"connectionTimeout,omitempty"`
	IdleTimeout       *Duration        `json:"idleTimeout,omitempty"`
	HTTP              *MeshTimeoutHTTP `json:"http,omitempty"`
}

type MeshTimeoutHTTP struct {
	RequestTimeout        *Duration `json:"requestTimeout,omitempty"`
	StreamIdleTimeout     *Duration `json:"streamIdleTimeout,omitempty"`
	MaxStreamDuration     *Duration `json:"maxStreamDuration,omitempty"`
	MaxConnectionDuration *Duration `json:"maxConnectionDuration,omitempty"`
	RequestHeadersTimeout *Duration `json:"requestHeadersTimeout,omitempty"`
}

// Timeouts is a MeshTimeoutConf with parsed durations; a nil field is unset.
type Timeouts struct {
	ConnectionTimeout     *time.Duration
	IdleTimeout           *time.Duration
	RequestTimeout        *time.Duration
	StreamIdleTimeout     *time.Duration
	MaxStreamDuration     *time.Duration
	MaxConnectionDuration *time.Duration
	RequestHeadersTimeout *time.Duration
}

func parsed(d *Duration) *time.Duration {
	v, ok := d.Get()
	if !ok {
		return nil
	}
	return &v
}

// Parsed returns the configured timeouts; unset or malformed ones are nil.
func (c MeshTimeoutConf) Parsed() Timeouts {
	t := Timeouts{ConnectionTimeout: parsed(c.ConnectionTimeout), IdleTimeout: parsed(c.IdleTimeout)}
	if h := c.HTTP; h != nil {
		t.RequestTimeout = parsed(h.RequestTimeout)
		t.StreamIdleTimeout = parsed(h.StreamIdleTimeout)
		t.MaxStreamDuration = parsed(h.MaxStreamDuration)
		t.MaxConnectionDuration = parsed(h.MaxConnectionDuration)
		t.RequestHeadersTimeout = parsed(h.RequestHeadersTimeout)
	}
	return t
}

// EffectiveTargetRef is the top-level targetRef, Mesh when absent.
func (s *MeshTimeoutSpec) EffectiveTargetRef() TargetRef { return topTargetRef(s.TargetRef) }

func (s *MeshTimeoutSpec) Default() {}

func (s *MeshTimeoutSpec) Validate() ValidationErrors {
	var v ValidationErrors
	top := topTargetRef(s.TargetRef)
	validateTargetRef(&v, "spec.targetRef", top,
		KindMesh, KindMeshSubset, KindMeshService, KindMeshServiceSubset, KindMeshGateway, KindMeshHTTPRoute, KindDataplane)
	if len(s.From) == 0 && len(s.To) == 0 {
		v.Add("spec", "at least one of 'from', 'to' has to be defined")
	}
	routeOrGateway := top.Kind == KindMeshHTTPRoute || top.Kind == KindMeshGateway
	if routeOrGateway && len(s.From) > 0 {
		v.Add("spec.from", "must not be defined with targetRef kind %s", top.Kind)
	} else {
		for i, f := range s.From {
			p := idxPath("spec.from", i)
			validateTargetRef(&v, p+".targetRef", f.TargetRef, KindMesh)
			validateTimeoutConf(&v, p+".default", f.Default, top.Kind)
		}
	}
	toKinds := []string{KindMesh, KindMeshService, KindMeshExternalService, KindMeshMultiZoneService}
	if routeOrGateway {
		toKinds = []string{KindMesh}
	}
	for i, t := range s.To {
		p := idxPath("spec.to", i)
		validateTargetRef(&v, p+".targetRef", t.TargetRef, toKinds...)
		validateTimeoutConf(&v, p+".default", t.Default, top.Kind)
	}
	return v
}

func validateTimeoutConf(v *ValidationErrors, p string, c MeshTimeoutConf, topKind string) {
	if c.ConnectionTimeout == nil && c.IdleTimeout == nil && c.HTTP == nil {
		v.Add(p, "at least one timeout should be configured")
		return
	}
	if topKind == KindMeshHTTPRoute {
		const msg = "can't be specified when top-level TargetRef is referencing MeshHTTPRoute"
		if c.ConnectionTimeout != nil {
			v.Add(p+".connectionTimeout", msg)
		}
		if c.IdleTimeout != nil {
			v.Add(p+".idleTimeout", msg)
		}
		if h := c.HTTP; h != nil {
			if h.MaxStreamDuration != nil {
				v.Add(p+".http.maxStreamDuration", msg)
			}
			if h.MaxConnectionDuration != nil {
				v.Add(p+".http.maxConnectionDuration", msg)
			}
		}
	}
	validateDurationPositive(v, p+".connectionTimeout", c.ConnectionTimeout)
	validateDurationNotNegative(v, p+".idleTimeout", c.IdleTimeout)
	h := c.HTTP
	if h == nil {
		return
	}
	hp := p + ".http"
	if h.RequestTimeout == nil && h.StreamIdleTimeout == nil && h.MaxStreamDuration == nil &&
		h.MaxConnectionDuration == nil && h.RequestHeadersTimeout == nil {
		v.Add(hp, "at least one timeout in this section should be configured")
	}
	validateDurationNotNegative(v, hp+".requestTimeout", h.RequestTimeout)
	validateDurationNotNegative(v, hp+".streamIdleTimeout", h.StreamIdleTimeout)
	validateDurationNotNegative(v, hp+".maxStreamDuration", h.MaxStreamDuration)
	validateDurationNotNegative(v, hp+".maxConnectionDuration", h.MaxConnectionDuration)
	validateDurationNotNegative(v, hp+".requestHeadersTimeout", h.RequestHeadersTimeout)
}
