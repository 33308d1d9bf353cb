package ops

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"unicode"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// dataplaneOverview is Kuma's DataplaneOverview: the Dataplane's meta at the
// top, its spec under "dataplane", and the proxy's insight.
type dataplaneOverview struct {
	Type             string                     `json:"type"`
	Mesh             string                     `json:"mesh"`
	Name             string                     `json:"name"`
	CreationTime     json.RawMessage            `json:"creationTime,omitempty"`
	ModificationTime json.RawMessage            `json:"modificationTime,omitempty"`
	Labels           json.RawMessage            `json:"labels,omitempty"`
	KRI              string                     `json:"kri,omitempty"`
	Dataplane        map[string]json.RawMessage `json:"dataplane"`
	DataplaneInsight dataplaneInsight           `json:"dataplaneInsight"`
}

// dataplaneInsight is Kuma's DataplaneInsight: one subscription per xDS
// stream, each naming the replica (controlPlaneInstanceId) it was on; the
// proxy is Online while one of them has no disconnectTime.
type dataplaneInsight struct {
	Subscriptions []*resource.DiscoverySubscription `json:"subscriptions"`
}

// metaFields are the keys of the flat shape that are not spec.
var metaFields = []string{"type", "mesh", "name", "creationTime", "modificationTime", "labels", "kri"}

func (s *server) toOverview(res *resource.Resource) (*dataplaneOverview, error) {
	raw, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", res.Key(), err)
	}
	fields := map[string]json.RawMessage{}
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("split %s: %w", res.Key(), err)
	}
	ov := &dataplaneOverview{
		Type:             "DataplaneOverview",
		Mesh:             res.Mesh,
		Name:             res.Name,
		CreationTime:     fields["creationTime"],
		ModificationTime: fields["modificationTime"],
		Labels:           fields["labels"],
		KRI:              res.KRI(),
		DataplaneInsight: dataplaneInsight{Subscriptions: []*resource.DiscoverySubscription{}},
	}
	if ins, ok := s.state.Get(resource.Key{Type: resource.TypeDataplaneInsight, Mesh: res.Mesh, Name: res.Name}); ok {
		if spec, ok := ins.Spec.(*resource.DataplaneInsightSpec); ok && len(spec.Subscriptions) > 0 {
			ov.DataplaneInsight.Subscriptions = spec.Subscriptions
		}
	}
	for _, k := range metaFields {
		delete(fields, k)
	}
	ov.Dataplane = fields
	return ov, nil
}

func (s *server) dataplaneType(w http.ResponseWriter, r *http.Request, title string) (resource.Type, bool) {
	d, ok := resource.DescriptorByPlural("dataplanes")
	if !ok {
		s.writeError(w, r, title, notFound(title, "this control plane has no dataplanes type"))
		return "", false
	}
	return d.Type, true
}

// handleOverviewList serves /meshes/{mesh}/dataplanes+insights and /dataplanes+insights.
func (s *server) handleOverviewList(w http.ResponseWriter, r *http.Request) {
	t, ok := s.dataplaneType(w, r, titleList)
	if !ok {
		return
	}
	dps := s.state.List(t, r.PathValue("mesh"))
	out := make([]*dataplaneOverview, 0, len(dps))
	for _, dp := range dps {
		ov, err := s.toOverview(dp)
		if err != nil {
			s.writeError(w, r, titleList, err)
			return
		}
		out = append(out, ov)
	}
	writeList(s, w, r, out)
}

func (s *server) handleOverviewGet(w http.ResponseWriter, r *http.Request) {
	t, ok := s.dataplaneType(w, r, titleGet)
	if !ok {
		return
	}
	res, found := s.state.Get(resource.Key{Type: t, Mesh: r.PathValue("mesh"), Name: r.PathValue("name")})
	if !found {
		s.writeError(w, r, titleGet, fsm.ErrNotFound)
		return
	}
	ov, err := s.toOverview(res)
	if err != nil {
		s.writeError(w, r, titleGet, err)
		return
	}
	w.Header().Set("ETag", etag(res.Version))
	writeJSON(w, http.StatusOK, ov, s.log)
}

// resourceTypeDescription is one row of Kuma's GET /_resources, which newer
// kumactl and GUIs read to learn the served types.
type resourceTypeDescription struct {
	Name                string             `json:"name"`
	ReadOnly            bool               `json:"readOnly"`
	Path                string             `json:"path"`
	SingularDisplayName string             `json:"singularDisplayName"`
	PluralDisplayName   string             `json:"pluralDisplayName"`
	Scope               string             `json:"scope"`
	IncludeInFederation bool               `json:"includeInFederation"`
	Policy              *policyDescription `json:"policy,omitempty"`
}

type policyDescription struct {
	IsTargetRef bool `json:"isTargetRef"`
}

func (s *server) handleResourceTypes(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Resources []resourceTypeDescription `json:"resources"`
	}{Resources: []resourceTypeDescription{}}
	for _, d := range resource.Descriptors() {
		td := resourceTypeDescription{
			Name:                string(d.Type),
			ReadOnly:            d.ReadOnly || (d.GlobalOnly && s.cfg.Mode != "global"),
			Path:                d.Plural,
			SingularDisplayName: displayName(string(d.Type)),
			PluralDisplayName:   pluralize(displayName(string(d.Type))),
			Scope:               "Mesh",
		}
		if d.Scope == resource.ScopeGlobal {
			td.Scope = "Global"
		}
		if d.SpecUnderSpecField {
			td.Policy = &policyDescription{IsTargetRef: true}
		}
		out.Resources = append(out.Resources, td)
	}
	writeJSON(w, http.StatusOK, out, s.log)
}

// displayName splits a type name at case changes: "MeshTrafficPermission" -> "Mesh Traffic Permission".
func displayName(t string) string {
	var b strings.Builder
	for i, c := range t {
		if i > 0 && unicode.IsUpper(c) {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func pluralize(s string) string {
	switch {
	case strings.HasSuffix(s, "s"), strings.HasSuffix(s, "sh"), strings.HasSuffix(s, "ch"), strings.HasSuffix(s, "x"):
		return s + "es"
	case strings.HasSuffix(s, "y"):
		return s[:len(s)-1] + "ies"
	}
	return s + "s"
}
