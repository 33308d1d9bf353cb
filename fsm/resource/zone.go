package resource

// TypeZone is a zone registered with a global control plane.
const TypeZone Type = "Zone"

func init() {
	register(&Descriptor{Type: TypeZone, ShortName: "z", Plural: "zones", Scope: ScopeGlobal, GlobalOnly: true, NewSpec: func() Spec { return &ZoneSpec{} }})
}

type ZoneSpec struct {
	// Enabled is true when unset (Kuma's default); Default makes it explicit.
	Enabled *bool `json:"enabled,omitempty"`
}

// IsEnabled reports whether the zone is enabled (unset means enabled).
func (s *ZoneSpec) IsEnabled() bool { return s.Enabled == nil || *s.Enabled }

func (s *ZoneSpec) Default() {
	if s.Enabled == nil {
		t := true
		s.Enabled = &t
	}
}

func (s *ZoneSpec) Validate() ValidationErrors { return nil }
