package resource

import (
	"sort"
	"strconv"
)

// TypeDataplane is Kuma's Dataplane: one proxy and the services behind it.
const TypeDataplane Type = "Dataplane"

func init() {
	register(&Descriptor{Type: TypeDataplane, ShortName: "dp", Plural: "dataplanes", Scope: ScopeMesh, NewSpec: func() Spec { return &DataplaneSpec{} }})
}

// DataplaneSpec holds a Dataplane's top-level fields.
type DataplaneSpec struct {
	Networking DataplaneNetworking `json:"networking"`
	Metrics    *MetricsBackend     `json:"metrics,omitempty"`
	Probes     *DataplaneProbes    `json:"probes,omitempty"`
}

type DataplaneNetworking struct {
	Address             string               `json:"address,omitempty"`
	AdvertisedAddress   string               `json:"advertisedAddress,omitempty"`
	Inbound             []Inbound            `json:"inbound,omitempty"`
	Outbound            []Outbound           `json:"outbound,omitempty"`
	Gateway             *Gateway             `json:"gateway,omitempty"`
	TransparentProxying *TransparentProxying `json:"transparentProxying,omitempty"`
	Admin               *Admin               `json:"admin,omitempty"`
}

// Inbound is one service port this proxy fronts.
type Inbound struct {
	Port           uint32            `json:"port,omitempty"`
	ServicePort    uint32            `json:"servicePort,omitempty"`
	ServiceAddress string            `json:"serviceAddress,omitempty"`
	Address        string            `json:"address,omitempty"`
	Tags           map[string]string `json:"tags,omitempty"`
	Health         *Health           `json:"health,omitempty"`
	ServiceProbe   RawJSON           `json:"serviceProbe,omitempty"`
	State          string            `json:"state,omitempty"`
	Name           string            `json:"name,omitempty"`
}

type Health struct {
	Ready bool `json:"ready,omitempty"`
}

// Outbound is one upstream the application reaches through the proxy.
type Outbound struct {
	Port       uint32            `json:"port,omitempty"`
	Address    string            `json:"address,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	Service    string            `json:"service,omitempty"` // deprecated: use tags
	BackendRef *BackendRef       `json:"backendRef,omitempty"`
}

type BackendRef struct {
	Kind   string            `json:"kind,omitempty"`
	Name   string            `json:"name,omitempty"`
	Port   uint32            `json:"port,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

type Gateway struct {
	Type string            `json:"type,omitempty"` // DELEGATED (default) or BUILTIN
	Tags map[string]string `json:"tags,omitempty"`
}

type TransparentProxying struct {
	RedirectPortInbound  uint32   `json:"redirectPortInbound,omitempty"`
	RedirectPortOutbound uint32   `json:"redirectPortOutbound,omitempty"`
	DirectAccessServices []string `json:"directAccessServices,omitempty"`
	ReachableServices    []string `json:"reachableServices,omitempty"`
	IPFamilyMode         string   `json:"ipFamilyMode,omitempty"`
	ReachableBackends    RawJSON  `json:"reachableBackends,omitempty"`
}

type Admin struct {
	Port uint32 `json:"port,omitempty"`
}

type DataplaneProbes struct {
	Port      uint32          `json:"port,omitempty"`
	Endpoints []ProbeEndpoint `json:"endpoints,omitempty"`
}

type ProbeEndpoint struct {
	InboundPort uint32 `json:"inboundPort,omitempty"`
	InboundPath string `json:"inboundPath,omitempty"`
	Path        string `json:"path,omitempty"`
}

// Inbound states.
const (
	InboundReady    = "Ready"
	InboundNotReady = "NotReady"
	InboundIgnored  = "Ignored"
)

// DefaultOutboundAddress is where outbounds listen when no address is given.
const DefaultOutboundAddress = "127.0.0.1"

// Default sets servicePort = port on inbounds and 127.0.0.1 on outbounds without an address.
func (s *DataplaneSpec) Default() {
	for i := range s.Networking.Inbound {
		if in := &s.Networking.Inbound[i]; in.ServicePort == 0 {
			in.ServicePort = in.Port
		}
	}
	for i := range s.Networking.Outbound {
		if out := &s.Networking.Outbound[i]; out.Address == "" {
			out.Address = DefaultOutboundAddress
		}
	}
}

// IsGateway reports whether this Dataplane is a gateway proxy.
func (s *DataplaneSpec) IsGateway() bool { return s.Networking.Gateway != nil }

// Services returns the sorted unique kuma.io/service values of the inbounds.
func (s *DataplaneSpec) Services() []string {
	var out []string
	for _, in := range s.Networking.Inbound {
		if svc, ok := in.Tags[ServiceTag]; ok && svc != "" {
			out = append(out, svc)
		}
	}
	if len(out) == 0 {
		return nil
	}
	sort.Strings(out)
	j := 1
	for i := 1; i < len(out); i++ {
		if out[i] != out[j-1] {
			out[j] = out[i]
			j++
		}
	}
	return out[:j]
}

// DataplaneServices returns the sorted unique inbound kuma.io/service values
// of a Dataplane, or nil for any other resource.
func DataplaneServices(r *Resource) []string {
	if r == nil {
		return nil
	}
	s, ok := r.Spec.(*DataplaneSpec)
	if !ok || s == nil {
		return nil
	}
	return s.Services()
}

// EffectiveServicePort is servicePort, or port when servicePort is unset.
func (in *Inbound) EffectiveServicePort() uint32 {
	if in.ServicePort != 0 {
		return in.ServicePort
	}
	return in.Port
}

// ServiceName is the outbound's kuma.io/service tag, or the legacy service field.
func (o *Outbound) ServiceName() string {
	if s := o.Tags[ServiceTag]; s != "" {
		return s
	}
	return o.Service
}

func (s *DataplaneSpec) Validate() ValidationErrors {
	var v ValidationErrors
	n := &s.Networking
	const root = "networking"
	if len(n.Inbound) == 0 && n.Gateway == nil {
		v.Add(root, "has to contain at least one inbound interface or gateway")
	}
	if len(n.Inbound) > 0 && n.Gateway != nil {
		v.Add(root, "inbound cannot be defined both with gateway")
	}
	switch {
	case n.Address == "":
		v.Add(root+".address", "address can't be empty")
	case !isIP(n.Address) && !isHostname(n.Address):
		v.Add(root+".address", "address has to be valid IP address or domain name")
	}
	if n.AdvertisedAddress != "" && !isIP(n.AdvertisedAddress) && !isHostname(n.AdvertisedAddress) {
		v.Add(root+".advertisedAddress", "has to be valid IP address or domain name")
	}
	if g := n.Gateway; g != nil {
		p := root + ".gateway"
		if g.Type != "" {
			oneOf(&v, p+".type", g.Type, "BUILTIN", "DELEGATED")
		}
		validateTagMap(&v, p+".tags", g.Tags, tagOpts{requireService: true, serviceTagLabel: "tag has to exist", checkProtocol: true})
	}
	for i := range n.Inbound {
		validateInbound(&v, idxPath(root+".inbound", i), &n.Inbound[i], n.Address)
	}
	for i := range n.Outbound {
		validateOutbound(&v, idxPath(root+".outbound", i), &n.Outbound[i])
	}
	if tp := n.TransparentProxying; tp != nil {
		p := root + ".transparentProxying"
		if tp.RedirectPortInbound > 65535 {
			v.Add(p+".redirectPortInbound", "port has to be in range of [1, 65535]")
		}
		if tp.RedirectPortOutbound > 65535 {
			v.Add(p+".redirectPortOutbound", "port has to be in range of [1, 65535]")
		}
		if tp.RedirectPortInbound != 0 && tp.RedirectPortInbound == tp.RedirectPortOutbound {
			v.Add(p+".redirectPortOutbound", "must differ from redirectPortInbound")
		}
		if tp.IPFamilyMode != "" {
			oneOf(&v, p+".ipFamilyMode", tp.IPFamilyMode, "DualStack", "IPv4", "IPv6")
		}
	}
	if a := n.Admin; a != nil && a.Port > 65535 {
		v.Add(root+".admin.port", "port has to be in range of [1, 65535]")
	}
	if s.Metrics != nil && s.Metrics.Type != "" {
		oneOf(&v, "metrics.type", s.Metrics.Type, metricsTypes...)
	}
	if p := s.Probes; p != nil {
		if p.Port > 65535 {
			v.Add("probes.port", "port has to be in range of [1, 65535]")
		}
		for i, e := range p.Endpoints {
			ep := idxPath("probes.endpoints", i)
			if !validPort(e.InboundPort) {
				v.Add(ep+".inboundPort", "port has to be in range of [1, 65535]")
			}
			if e.Path == "" {
				v.Add(ep+".path", "cannot be empty")
			}
		}
	}
	return v
}

func validateInbound(v *ValidationErrors, p string, in *Inbound, dpAddress string) {
	if !validPort(in.Port) {
		v.Add(p+".port", "port has to be in range of [1, 65535]")
	}
	if in.ServicePort > 65535 {
		v.Add(p+".servicePort", "servicePort has to be in range of [0, 65535]")
	}
	if in.ServiceAddress != "" {
		if !isIP(in.ServiceAddress) {
			v.Add(p+".serviceAddress", "serviceAddress has to be valid IP address")
		}
		if in.ServiceAddress == dpAddress && (in.ServicePort == 0 || in.ServicePort == in.Port) {
			v.Add(p+".serviceAddress", "serviceAddress and servicePort has to differ from address and port")
		}
	}
	if in.Address != "" {
		if !isIP(in.Address) {
			v.Add(p+".address", "address has to be valid IP address")
		}
		if in.Address == in.ServiceAddress && (in.ServicePort == 0 || in.ServicePort == in.Port) {
			v.Add(p+".serviceAddress", "serviceAddress and servicePort has to differ from address and port")
		}
	}
	if in.State != "" {
		oneOf(v, p+".state", in.State, InboundReady, InboundNotReady, InboundIgnored)
	}
	if in.Name != "" && !isPortName(in.Name) {
		v.Add(p+".name", "invalid characters: must consist of lower case alphanumeric characters, '-', '.' and '_'.")
	}
	validateTagMap(v, p+".tags", in.Tags, tagOpts{requireService: true, serviceTagLabel: "tag has to exist", checkProtocol: true})
}

func isPortName(s string) bool {
	if _, err := strconv.Atoi(s); err == nil {
		return false // a number would be confused with a port
	}
	return refNameCharset.MatchString(s) && len(s) <= 253
}

func validateOutbound(v *ValidationErrors, p string, out *Outbound) {
	if out.BackendRef == nil && !validPort(out.Port) {
		v.Add(p+".port", "port has to be in range of [1, 65535]")
	}
	if out.Address != "" && !isIP(out.Address) {
		v.Add(p+".address", "address has to be valid IP address")
	}
	if b := out.BackendRef; b != nil {
		if len(out.Tags) > 0 {
			v.Add(p+".tags", "cannot be defined with backendRef")
		}
		if b.Kind == "" {
			v.Add(p+".backendRef.kind", "must be defined")
		} else {
			oneOf(v, p+".backendRef.kind", b.Kind, KindMeshService, KindMeshExternalService, KindMeshMultiZoneService)
		}
		if b.Name == "" && len(b.Labels) == 0 {
			v.Add(p+".backendRef.name", "must be defined")
		}
		if b.Port > 65535 {
			v.Add(p+".backendRef.port", "port has to be in range of [1, 65535]")
		}
		return
	}
	if len(out.Tags) == 0 {
		if out.Service == "" {
			v.Add(p+".kuma.io/service", "cannot be empty")
		} else if !tagValueCharset.MatchString(out.Service) {
			v.Add(p+".service", "must consist of alphanumeric characters, dots, dashes and underscores")
		}
		return
	}
	validateTagMap(v, p+".tags", out.Tags, tagOpts{requireService: true, serviceTagLabel: "tag has to exist"})
}
