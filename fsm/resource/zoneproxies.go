package resource

// TypeZoneIngress and TypeZoneEgress are the zone proxies: ingress receives
// cross-zone traffic, egress sends traffic out of the zone.
const (
	TypeZoneIngress Type = "ZoneIngress"
	TypeZoneEgress  Type = "ZoneEgress"
)

func init() {
	register(&Descriptor{Type: TypeZoneIngress, ShortName: "zi", Plural: "zoneingresses", AltPlurals: []string{"zone-ingresses"}, Scope: ScopeGlobal, NewSpec: func() Spec { return &ZoneIngressSpec{} }})
	register(&Descriptor{Type: TypeZoneEgress, ShortName: "ze", Plural: "zoneegresses", Scope: ScopeGlobal, NewSpec: func() Spec { return &ZoneEgressSpec{} }})
}

type ZoneIngressSpec struct {
	Zone              string                `json:"zone,omitempty"`
	Networking        ZoneIngressNetworking `json:"networking"`
	AvailableServices []AvailableService    `json:"availableServices,omitempty"`
}

type ZoneIngressNetworking struct {
	Address           string `json:"address,omitempty"`
	AdvertisedAddress string `json:"advertisedAddress,omitempty"`
	Port              uint32 `json:"port,omitempty"`
	AdvertisedPort    uint32 `json:"advertisedPort,omitempty"`
	Admin             *Admin `json:"admin,omitempty"`
}

type AvailableService struct {
	Tags            map[string]string `json:"tags,omitempty"`
	Instances       uint32            `json:"instances,omitempty"`
	Mesh            string            `json:"mesh,omitempty"`
	ExternalService bool              `json:"externalService,omitempty"`
}

func (s *ZoneIngressSpec) Default() {}

func (s *ZoneIngressSpec) Validate() ValidationErrors {
	var v ValidationErrors
	n := s.Networking
	validateProxyAddress(&v, "networking.address", n.Address)
	if n.AdvertisedAddress == "" && n.AdvertisedPort != 0 {
		v.Add("networking.advertisedAddress", "has to be defined with advertisedPort")
	}
	if n.AdvertisedAddress != "" {
		if !isIP(n.AdvertisedAddress) && !isHostname(n.AdvertisedAddress) {
			v.Add("networking.advertisedAddress", "has to be valid IP address or domain name")
		}
		if !validPort(n.AdvertisedPort) {
			v.Add("networking.advertisedPort", "port has to be in range of [1, 65535]")
		}
	}
	validateProxyPorts(&v, n.Port, n.Admin)
	for i, as := range s.AvailableServices {
		p := idxPath("availableServices", i)
		validateTagMap(&v, p+".tags", as.Tags, tagOpts{requireService: true, serviceTagLabel: "cannot be empty"})
		if as.Mesh != "" && !isIdentifier(as.Mesh) {
			v.Add(p+".mesh", "invalid characters. Valid characters are numbers, lowercase latin letters and '-', '_', '.' symbols.")
		}
	}
	return v
}

type ZoneEgressSpec struct {
	Zone       string               `json:"zone,omitempty"`
	Networking ZoneEgressNetworking `json:"networking"`
}

type ZoneEgressNetworking struct {
	Address string `json:"address,omitempty"`
	Port    uint32 `json:"port,omitempty"`
	Admin   *Admin `json:"admin,omitempty"`
}

func (s *ZoneEgressSpec) Default() {}

func (s *ZoneEgressSpec) Validate() ValidationErrors {
	var v ValidationErrors
	validateProxyAddress(&v, "networking.address", s.Networking.Address)
	validateProxyPorts(&v, s.Networking.Port, s.Networking.Admin)
	return v
}

func validateProxyAddress(v *ValidationErrors, p, addr string) {
	switch {
	case addr == "":
		v.Add(p, "address can't be empty")
	case !isIP(addr) && !isHostname(addr):
		v.Add(p, "address has to be valid IP address or domain name")
	}
}

func validateProxyPorts(v *ValidationErrors, port uint32, admin *Admin) {
	if !validPort(port) {
		v.Add("networking.port", "port has to be in range of [1, 65535]")
	}
	if admin != nil {
		if admin.Port > 65535 {
			v.Add("networking.admin.port", "port has to be in range of [1, 65535]")
		} else if admin.Port != 0 && admin.Port == port {
			v.Add("networking.admin.port", "must differ from port")
		}
	}
}
