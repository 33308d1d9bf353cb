package resource

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Type is a resource kind as Kuma names it in the `type` field ("Mesh", "Dataplane", ...).
type Type string

// Scope says whether a resource lives inside a mesh or at the top level.
type Scope int

const (
	ScopeMesh   Scope = iota // /meshes/{mesh}/{plural}/{name}
	ScopeGlobal              // /{plural}/{name} (Mesh itself, Zone, ZoneIngress, ZoneEgress)
)

// Key identifies one resource. Mesh is empty for global-scoped types.
type Key struct {
	Type Type
	Mesh string
	Name string
}

func (k Key) String() string {
	if k.Mesh == "" {
		return string(k.Type) + "/" + k.Name
	}
	return string(k.Type) + "/" + k.Mesh + "/" + k.Name
}

// Meta is what every resource carries besides its spec.
// Version, CreationTime and ModificationTime are set by the state machine from
// the log entry that last changed the resource; values sent by clients are ignored.
type Meta struct {
	Type             Type
	Mesh             string
	Name             string
	Labels           map[string]string
	CreationTime     time.Time
	ModificationTime time.Time
	Version          uint64 // Raft index of the entry that last changed it
}

// Spec is the type-specific part of a resource. Implementations are plain
// structs with Kuma's JSON field names. A Spec stored in the state is never
// mutated: writers replace it.
type Spec interface {
	// Validate checks the spec alone. Paths are relative to the resource root
	// in Kuma's style: "networking.inbound[0].port", "spec.targetRef.kind".
	Validate() ValidationErrors
	// Default fills defaulted fields (Kuma's defaults) in place before validation.
	Default()
}

// Resource is one stored object: meta plus spec. Treat it as immutable once
// handed to the state machine.
type Resource struct {
	Meta
	Spec Spec
}

func (r *Resource) Key() Key { return Key{Type: r.Type, Mesh: r.Mesh, Name: r.Name} }

// KRI is Kuma's resource identifier of r
// (kri_{short}_{mesh}_{zone}_{namespace}_{name}_{section}), or "" when its
// type has none. The name is the display name when the resource carries one.
func (r *Resource) KRI() string {
	d, ok := DescriptorOf(r.Type)
	if !ok || d.ShortName == "" {
		return ""
	}
	name := r.Name
	if dn := r.Labels["kuma.io/display-name"]; dn != "" {
		name = dn
	}
	return "kri_" + d.ShortName + "_" + r.Mesh + "_" + r.Labels["kuma.io/zone"] + "_" + r.Labels["k8s.kuma.io/namespace"] + "_" + name + "_"
}

// Descriptor describes a resource type: its names, scope and how to make a spec.
type Descriptor struct {
	Type   Type
	Plural string // URL path segment: "dataplanes", "traffic-routes"
	Scope  Scope
	// SpecUnderSpecField is true for targetRef policies (MeshTrafficPermission,
	// MeshTimeout), whose spec sits under a `spec:` key in universal YAML.
	SpecUnderSpecField bool
	// GlobalOnly types may be written only on a global control plane (Zone).
	GlobalOnly bool
	// ReadOnly types are written by the control plane itself, never
	// through the API (DataplaneInsight).
	ReadOnly bool
	// ShortName is Kuma's short type name in a KRI ("dp", "mtp"); empty for
	// types Kuma gives no KRI.
	ShortName string
	// AltPlurals are other URL segments Kuma serves the type under
	// ("zone-ingresses", the path of kumactl 2.9).
	AltPlurals []string
	NewSpec    func() Spec
}

var (
	byType   = map[Type]*Descriptor{}
	byPlural = map[string]*Descriptor{}
)

// register is called from init() of the file that defines each type.
func register(d *Descriptor) {
	if _, dup := byType[d.Type]; dup {
		panic("resource: duplicate type " + string(d.Type))
	}
	byType[d.Type] = d
	byPlural[d.Plural] = d
	for _, a := range d.AltPlurals {
		byPlural[a] = d
	}
}

// DescriptorOf returns the descriptor of a type, or false if the type is unknown.
func DescriptorOf(t Type) (*Descriptor, bool) { d, ok := byType[t]; return d, ok }

// DescriptorByPlural resolves a URL segment ("dataplanes") to its descriptor.
func DescriptorByPlural(p string) (*Descriptor, bool) { d, ok := byPlural[p]; return d, ok }

// Descriptors lists every known type, sorted by Type.
func Descriptors() []*Descriptor {
	out := make([]*Descriptor, 0, len(byType))
	for _, d := range byType {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out
}

// ValidationError names one invalid field and why, as Kuma's invalid_parameters do.
type ValidationError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// ValidationErrors is a list of field violations; a nil or empty list means valid.
type ValidationErrors []ValidationError

func (v ValidationErrors) Error() string {
	parts := make([]string, len(v))
	for i, e := range v {
		if e.Field == "" {
			parts[i] = e.Reason
		} else {
			parts[i] = e.Field + ": " + e.Reason
		}
	}
	return "invalid resource: " + strings.Join(parts, "; ")
}

// Add appends a violation.
func (v *ValidationErrors) Add(field, format string, args ...any) {
	*v = append(*v, ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)})
}

// Err returns nil when there are no violations, so callers can `return v.Err()`.
func (v ValidationErrors) Err() error {
	if len(v) == 0 {
		return nil
	}
	return v
}
