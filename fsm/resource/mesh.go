package resource

// TypeMesh is Kuma's Mesh: the unit of tenancy; its name is the mesh name.
const TypeMesh Type = "Mesh"

func init() {
	register(&Descriptor{Type: TypeMesh, ShortName: "m", Plural: "meshes", Scope: ScopeGlobal, NewSpec: func() Spec { return &MeshSpec{} }})
}

// MeshSpec holds a Mesh's top-level fields.
type MeshSpec struct {
	MTLS                        *MeshMTLS         `json:"mtls,omitempty"`
	Tracing                     *MeshTracing      `json:"tracing,omitempty"`
	Logging                     *MeshLogging      `json:"logging,omitempty"`
	Metrics                     *MeshMetrics      `json:"metrics,omitempty"`
	Networking                  *MeshNetworking   `json:"networking,omitempty"`
	Routing                     *MeshRouting      `json:"routing,omitempty"`
	Constraints                 RawJSON           `json:"constraints,omitempty"`
	SkipCreatingInitialPolicies []string          `json:"skipCreatingInitialPolicies,omitempty"`
	MeshServices                *MeshServicesMode `json:"meshServices,omitempty"`
}

type MeshMTLS struct {
	EnabledBackend string        `json:"enabledBackend,omitempty"`
	Backends       []MeshBackend `json:"backends,omitempty"`
	SkipValidation bool          `json:"skipValidation,omitempty"`
}

// MeshBackend is a certificate authority backend.
type MeshBackend struct {
	Name   string  `json:"name"`
	Type   string  `json:"type"`
	Mode   string  `json:"mode,omitempty"`
	DpCert *DpCert `json:"dpCert,omitempty"`
	Conf   RawJSON `json:"conf,omitempty"`
}

type DpCert struct {
	Rotation       *DpCertRotation `json:"rotation,omitempty"`
	RequestTimeout *Duration       `json:"requestTimeout,omitempty"`
}

type DpCertRotation struct {
	Expiration string `json:"expiration,omitempty"`
}

type MeshTracing struct {
	DefaultBackend string           `json:"defaultBackend,omitempty"`
	Backends       []TracingBackend `json:"backends,omitempty"`
}

type TracingBackend struct {
	Name     string   `json:"name"`
	Type     string   `json:"type"`
	Sampling *float64 `json:"sampling,omitempty"`
	Conf     RawJSON  `json:"conf,omitempty"`
}

type MeshLogging struct {
	DefaultBackend string           `json:"defaultBackend,omitempty"`
	Backends       []LoggingBackend `json:"backends,omitempty"`
}

type LoggingBackend struct {
	Name   string  `json:"name"`
	Type   string  `json:"type"`
	Format string  `json:"format,omitempty"`
	Conf   RawJSON `json:"conf,omitempty"`
}

type MeshMetrics struct {
	EnabledBackend string           `json:"enabledBackend,omitempty"`
	Backends       []MetricsBackend `json:"backends,omitempty"`
}

type MetricsBackend struct {
	Name string  `json:"name,omitempty"`
	Type string  `json:"type,omitempty"`
	Conf RawJSON `json:"conf,omitempty"`
}

type MeshNetworking struct {
	Outbound *MeshOutbound `json:"outbound,omitempty"`
}

type MeshOutbound struct {
	// Passthrough is a BoolValue in Kuma: unset means true.
	Passthrough *bool `json:"passthrough,omitempty"`
}

type MeshRouting struct {
	LocalityAwareLoadBalancing             bool `json:"localityAwareLoadBalancing,omitempty"`
	ZoneEgress                             bool `json:"zoneEgress,omitempty"`
	DefaultForbidMeshExternalServiceAccess bool `json:"defaultForbidMeshExternalServiceAccess,omitempty"`
}

type MeshServicesMode struct {
	Mode string `json:"mode,omitempty"`
}

// MTLSEnabled reports whether mTLS is on (an enabled backend is set).
func (s *MeshSpec) MTLSEnabled() bool { return s.MTLS != nil && s.MTLS.EnabledBackend != "" }

// PassthroughEnabled reports whether outbound passthrough is on (Kuma's default: true).
func (s *MeshSpec) PassthroughEnabled() bool {
	if s.Networking == nil || s.Networking.Outbound == nil || s.Networking.Outbound.Passthrough == nil {
		return true
	}
	return *s.Networking.Outbound.Passthrough
}

func (s *MeshSpec) Default() {}

var (
	caTypes        = []string{"acmpca", "builtin", "certmanager", "provided", "vault"}
	tracingTypes   = []string{"datadog", "opentelemetry", "zipkin"}
	loggingTypes   = []string{"file", "tcp"}
	metricsTypes   = []string{"prometheus"}
	meshSvcModes   = []string{"Disabled", "Everywhere", "Exclusive", "ReachableBackends"}
	mtlsModes      = []string{"PERMISSIVE", "STRICT"}
	initialPolices = []string{"*", "circuit-breaker", "retry", "timeout", "traffic-permission", "traffic-route"}
)

func (s *MeshSpec) Validate() ValidationErrors {
	var v ValidationErrors
	if m := s.MTLS; m != nil {
		names := make([]string, len(m.Backends))
		for i, b := range m.Backends {
			names[i] = b.Name
			p := idxPath("mtls.backends", i)
			if b.Type == "" {
				v.Add(p+".type", "cannot be empty")
			} else {
				oneOf(&v, p+".type", b.Type, caTypes...)
			}
			if b.Mode != "" {
				oneOf(&v, p+".mode", b.Mode, mtlsModes...)
			}
			if b.DpCert != nil {
				validateDurationPositive(&v, p+".dpCert.requestTimeout", b.DpCert.RequestTimeout)
			}
		}
		seen := backendNames(&v, "mtls.backends", names)
		if m.EnabledBackend != "" && !seen[m.EnabledBackend] {
			v.Add("mtls.enabledBackend", "has to be set to one of the backends in the mesh")
		}
	}
	if t := s.Tracing; t != nil {
		names := make([]string, len(t.Backends))
		for i, b := range t.Backends {
			names[i] = b.Name
			p := idxPath("tracing.backends", i)
			oneOf(&v, p+".type", b.Type, tracingTypes...)
			if b.Sampling != nil && (*b.Sampling < 0 || *b.Sampling > 100) {
				v.Add(p+".sampling", "has to be in [0.0 - 100.0] range")
			}
		}
		seen := backendNames(&v, "tracing.backends", names)
		if t.DefaultBackend != "" && !seen[t.DefaultBackend] {
			v.Add("tracing.defaultBackend", "has to be set to one of the backends in the mesh")
		}
	}
	if l := s.Logging; l != nil {
		names := make([]string, len(l.Backends))
		for i, b := range l.Backends {
			names[i] = b.Name
			oneOf(&v, idxPath("logging.backends", i)+".type", b.Type, loggingTypes...)
		}
		seen := backendNames(&v, "logging.backends", names)
		if l.DefaultBackend != "" && !seen[l.DefaultBackend] {
			v.Add("logging.defaultBackend", "has to be set to one of the backends in the mesh")
		}
	}
	if m := s.Metrics; m != nil {
		names := make([]string, len(m.Backends))
		for i, b := range m.Backends {
			names[i] = b.Name
			oneOf(&v, idxPath("metrics.backends", i)+".type", b.Type, metricsTypes...)
		}
		seen := backendNames(&v, "metrics.backends", names)
		if m.EnabledBackend != "" && !seen[m.EnabledBackend] {
			v.Add("metrics.enabledBackend", "has to be set to one of the backends in the mesh")
		}
	}
	for i, p := range s.SkipCreatingInitialPolicies {
		oneOf(&v, idxPath("skipCreatingInitialPolicies", i), p, initialPolices...)
	}
	if s.MeshServices != nil && s.MeshServices.Mode != "" {
		oneOf(&v, "meshServices.mode", s.MeshServices.Mode, meshSvcModes...)
	}
	return v
}
