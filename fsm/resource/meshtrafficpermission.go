package resource

// TypeMeshTrafficPermission allows or denies traffic to the targeted proxies.
const TypeMeshTrafficPermission Type = "MeshTrafficPermission"

func init() {
	register(&Descriptor{
		Type: TypeMeshTrafficPermission, ShortName: "mtp", Plural: "meshtrafficpermissions", Scope: ScopeMesh,
		SpecUnderSpecField: true, NewSpec: func() Spec { return &MeshTrafficPermissionSpec{} },
	})
}

type MeshTrafficPermissionSpec struct {
	// TargetRef defaults to kind Mesh when absent.
	TargetRef *TargetRef                  `json:"targetRef,omitempty"`
	From      []MeshTrafficPermissionFrom `json:"from,omitempty"`
}

type MeshTrafficPermissionFrom struct {
	TargetRef TargetRef                  `json:"targetRef"`
	Default   *MeshTrafficPermissionConf `json:"default,omitempty"`
}

type MeshTrafficPermissionConf struct {
	Action string `json:"action,omitempty"`
}

// Actions of a MeshTrafficPermission.
const (
	ActionAllow               = "Allow"
	ActionDeny                = "Deny"
	ActionAllowWithShadowDeny = "AllowWithShadowDeny"
)

func (s *MeshTrafficPermissionSpec) Default() {}

func (s *MeshTrafficPermissionSpec) Validate() ValidationErrors {
	var v ValidationErrors
	validateTargetRef(&v, "spec.targetRef", topTargetRef(s.TargetRef),
		KindMesh, KindMeshSubset, KindMeshService, KindMeshServiceSubset, KindDataplane)
	if len(s.From) == 0 {
		v.Add("spec.from", "needs at least one item")
	}
	for i, f := range s.From {
		p := idxPath("spec.from", i)
		validateTargetRef(&v, p+".targetRef", f.TargetRef, KindMesh, KindMeshSubset, KindMeshService, KindMeshServiceSubset)
		if f.Default == nil {
			v.Add(p+".default", "must be defined")
			continue
		}
		if f.Default.Action == "" {
			v.Add(p+".default.action", "must be defined. %s", allowedValuesHint(ActionAllow, ActionDeny, ActionAllowWithShadowDeny))
		} else {
			oneOf(&v, p+".default.action", f.Default.Action, ActionAllow, ActionDeny, ActionAllowWithShadowDeny)
		}
	}
	return v
}

// EffectiveTargetRef is the top-level targetRef, Mesh when absent.
func (s *MeshTrafficPermissionSpec) EffectiveTargetRef() TargetRef { return topTargetRef(s.TargetRef) }
