package fsm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// schema is the one seam between the state machine and the resource package:
// how a resource is (de)serialised for the log and snapshots, how it is
// validated, and which services a Dataplane provides. Production code uses
// resourceSchema; tests swap in their own types.
type schema interface {
	descriptor(t resource.Type) (*resource.Descriptor, bool)
	// encodeResource returns a self-describing encoding that keeps Meta.Version.
	encodeResource(r *resource.Resource) ([]byte, error)
	decodeResource(data []byte) (*resource.Resource, error)
	validate(r *resource.Resource) resource.ValidationErrors
	dataplaneServices(r *resource.Resource) []string
}

// activeSchema is replaced only by tests (in TestMain, before any FSM exists).
var activeSchema schema = resourceSchema{}

// Resource types the state machine itself knows about.
const (
	meshType      = resource.TypeMesh
	dataplaneType = resource.TypeDataplane
	defaultMesh   = "default"
)

// resourceSchema adapts the fsm/resource package: its stored codec (which
// keeps Meta.Version), its validation and its Dataplane service index.
type resourceSchema struct{}

func (resourceSchema) descriptor(t resource.Type) (*resource.Descriptor, bool) {
	return resource.DescriptorOf(t)
}

func (resourceSchema) encodeResource(r *resource.Resource) ([]byte, error) {
	return resource.EncodeStored(r)
}

func (resourceSchema) decodeResource(data []byte) (*resource.Resource, error) {
	return resource.DecodeStored(data)
}

func (resourceSchema) validate(r *resource.Resource) resource.ValidationErrors {
	return resource.Validate(r)
}

func (resourceSchema) dataplaneServices(r *resource.Resource) []string {
	return resource.DataplaneServices(r)
}

// storedJSON is a minimal stored encoding (meta including Version, plus the
// spec's own JSON) with a pluggable type registry, used by the tests' schema
// so they do not depend on the real resource types.
type storedJSON struct {
	Type             resource.Type     `json:"type"`
	Mesh             string            `json:"mesh,omitempty"`
	Name             string            `json:"name"`
	Labels           map[string]string `json:"labels,omitempty"`
	CreationTime     time.Time         `json:"creationTime"`
	ModificationTime time.Time         `json:"modificationTime"`
	Version          uint64            `json:"version,omitempty"`
	Spec             json.RawMessage   `json:"spec"`
}

func encodeStoredJSON(r *resource.Resource) ([]byte, error) {
	if r == nil {
		return nil, fmt.Errorf("encode resource: nil resource")
	}
	if r.Spec == nil {
		return nil, fmt.Errorf("encode resource %s: nil spec", r.Key())
	}
	spec, err := json.Marshal(r.Spec)
	if err != nil {
		return nil, fmt.Errorf("encode resource %s: spec: %w", r.Key(), err)
	}
	out, err := json.Marshal(storedJSON{
		Type: r.Type, Mesh: r.Mesh, Name: r.Name, Labels: r.Labels,
		CreationTime: r.CreationTime, ModificationTime: r.ModificationTime,
		Version: r.Version, Spec: spec,
	})
	if err != nil {
		return nil, fmt.Errorf("encode resource %s: %w", r.Key(), err)
	}
	return out, nil
}

func decodeStoredJSON(data []byte, lookup func(resource.Type) (*resource.Descriptor, bool)) (*resource.Resource, error) {
	var s storedJSON
	if err := strictUnmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("decode resource: %w", err)
	}
	d, ok := lookup(s.Type)
	if !ok || d.NewSpec == nil {
		return nil, fmt.Errorf("decode resource: type: unknown type %q", s.Type)
	}
	spec := d.NewSpec()
	if len(s.Spec) == 0 {
		return nil, fmt.Errorf("decode resource %s/%s: spec: missing", s.Type, s.Name)
	}
	if err := strictUnmarshal(s.Spec, spec); err != nil {
		return nil, fmt.Errorf("decode resource %s/%s: spec: %w", s.Type, s.Name, err)
	}
	if len(s.Labels) == 0 {
		s.Labels = nil
	}
	return &resource.Resource{
		Meta: resource.Meta{
			Type: s.Type, Mesh: s.Mesh, Name: s.Name, Labels: s.Labels,
			CreationTime: s.CreationTime, ModificationTime: s.ModificationTime,
			Version: s.Version,
		},
		Spec: spec,
	}, nil
}

// strictUnmarshal decodes exactly one JSON value, rejecting unknown fields and
// trailing data.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if rest := bytes.TrimSpace(data[dec.InputOffset():]); len(rest) > 0 {
		return fmt.Errorf("trailing data after JSON value")
	}
	return nil
}
