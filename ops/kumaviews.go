package ops

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Views that Kuma's own kumactl reads (inspect meshes, services, zone
// ingresses and egresses, dataplane policies), computed from the local state.

// proxyCounts is Kuma's online/offline tally of proxies.
type proxyCounts struct {
	Total             int `json:"total"`
	Online            int `json:"online"`
	Offline           int `json:"offline"`
	PartiallyDegraded int `json:"partiallyDegraded"`
}

// online reports whether the proxy behind key (a Dataplane) has an open xDS stream.
func (s *server) dataplaneOnline(mesh, name string) bool {
	ins, ok := s.state.Get(resource.Key{Type: resource.TypeDataplaneInsight, Mesh: mesh, Name: name})
	if !ok {
		return false
	}
	spec, ok := ins.Spec.(*resource.DataplaneInsightSpec)
	if !ok {
		return false
	}
	_, online := spec.Online()
	return online
}

func (c *proxyCounts) add(online bool) {
	c.Total++
	if online {
		c.Online++
	} else {
		c.Offline++
	}
}

type policyStat struct {
	Total int `json:"total"`
}

// meshInsight is Kuma's MeshInsight.
type meshInsight struct {
	Type             string                 `json:"type"`
	Name             string                 `json:"name"`
	CreationTime     time.Time              `json:"creationTime"`
	ModificationTime time.Time              `json:"modificationTime"`
	LastSync         time.Time              `json:"lastSync"`
	Dataplanes       proxyCounts            `json:"dataplanes"`
	DataplanesByType map[string]proxyCounts `json:"dataplanesByType"`
	Policies         map[string]policyStat  `json:"policies"`
	DpVersions       map[string]any         `json:"dpVersions"`
	MTLS             map[string]any         `json:"mTLS"`
	Services         map[string]int         `json:"services"`
	Resources        map[string]policyStat  `json:"resources"`
}

func (s *server) meshInsight(m *resource.Resource) meshInsight {
	mi := meshInsight{
		Type: "MeshInsight", Name: m.Name, CreationTime: m.CreationTime, ModificationTime: m.ModificationTime,
		LastSync:         time.Now().UTC(),
		DataplanesByType: map[string]proxyCounts{},
		Policies:         map[string]policyStat{},
		DpVersions:       map[string]any{"kumaDp": map[string]any{}, "envoy": map[string]any{}},
		MTLS:             map[string]any{"issuedBackends": map[string]any{}, "supportedBackends": map[string]any{}},
		Resources:        map[string]policyStat{},
	}
	standard, gateway := proxyCounts{}, proxyCounts{}
	services := map[string]bool{}
	for _, dp := range s.state.List(resource.TypeDataplane, m.Name) {
		online := s.dataplaneOnline(dp.Mesh, dp.Name)
		mi.Dataplanes.add(online)
		spec, _ := dp.Spec.(*resource.DataplaneSpec)
		if spec != nil && spec.IsGateway() {
			gateway.add(online)
		} else {
			standard.add(online)
		}
		for _, svc := range dataplaneServices(spec) {
			services[svc] = true
		}
	}
	mi.DataplanesByType["standard"], mi.DataplanesByType["gateway"] = standard, gateway
	mi.Services = map[string]int{"total": len(services), "internal": len(services), "external": 0}
	for _, d := range resource.Descriptors() {
		if d.Scope != resource.ScopeMesh || d.ReadOnly || d.Type == resource.TypeDataplane {
			continue
		}
		if n := len(s.state.List(d.Type, m.Name)); n > 0 {
			mi.Policies[string(d.Type)] = policyStat{Total: n}
		}
	}
	mi.Resources[string(resource.TypeDataplane)] = policyStat{Total: mi.Dataplanes.Total}
	return mi
}

// dataplaneServices lists the kuma.io/service tags of a Dataplane's inbounds (or its gateway).
func dataplaneServices(spec *resource.DataplaneSpec) []string {
	if spec == nil {
		return nil
	}
	var out []string
	if gw := spec.Networking.Gateway; gw != nil {
		if svc := gw.Tags[resource.ServiceTag]; svc != "" {
			out = append(out, svc)
		}
	}
	for _, in := range spec.Networking.Inbound {
		if svc := in.Tags[resource.ServiceTag]; svc != "" && !slices.Contains(out, svc) {
			out = append(out, svc)
		}
	}
	return out
}

func (s *server) handleMeshInsightList(w http.ResponseWriter, r *http.Request) {
	meshes := s.state.List(resource.TypeMesh, "")
	out := make([]meshInsight, 0, len(meshes))
	for _, m := range meshes {
		out = append(out, s.meshInsight(m))
	}
	writeList(s, w, r, out)
}

func (s *server) handleMeshInsightGet(w http.ResponseWriter, r *http.Request) {
	m, ok := s.state.Get(resource.Key{Type: resource.TypeMesh, Name: r.PathValue("name")})
	if !ok {
		s.writeError(w, r, titleGet, fsm.ErrNotFound)
		return
	}
	writeJSON(w, http.StatusOK, s.meshInsight(m), s.log)
}

// serviceInsight is one row of Kuma's /meshes/{mesh}/service-insights: a
// service (kuma.io/service of inbounds) and its proxies.
type serviceInsight struct {
	Type             string      `json:"type"`
	Mesh             string      `json:"mesh"`
	Name             string      `json:"name"`
	CreationTime     time.Time   `json:"creationTime"`
	ModificationTime time.Time   `json:"modificationTime"`
	Status           string      `json:"status"`
	Dataplanes       proxyCounts `json:"dataplanes"`
	ServiceType      string      `json:"serviceType"`
}

func (s *server) serviceInsights(mesh string) []*serviceInsight {
	byName := map[string]*serviceInsight{}
	for _, dp := range s.state.List(resource.TypeDataplane, mesh) {
		spec, _ := dp.Spec.(*resource.DataplaneSpec)
		online := s.dataplaneOnline(dp.Mesh, dp.Name)
		for _, svc := range dataplaneServices(spec) {
			si := byName[svc]
			if si == nil {
				si = &serviceInsight{Type: "ServiceInsight", Mesh: mesh, Name: svc, ServiceType: "internal",
					CreationTime: dp.CreationTime, ModificationTime: dp.ModificationTime}
				if spec.IsGateway() {
					si.ServiceType = "gateway_delegated"
				}
				byName[svc] = si
			}
			si.ModificationTime = maxTime(si.ModificationTime, dp.ModificationTime)
			si.Dataplanes.add(online)
		}
	}
	out := make([]*serviceInsight, 0, len(byName))
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		si := byName[name]
		switch {
		case si.Dataplanes.Online == si.Dataplanes.Total:
			si.Status = "online"
		case si.Dataplanes.Online == 0:
			si.Status = "offline"
		default:
			si.Status = "partially_degraded"
		}
		out = append(out, si)
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func (s *server) handleServiceInsightList(w http.ResponseWriter, r *http.Request) {
	writeList(s, w, r, s.serviceInsights(r.PathValue("mesh")))
}

func (s *server) handleServiceInsightGet(w http.ResponseWriter, r *http.Request) {
	for _, si := range s.serviceInsights(r.PathValue("mesh")) {
		if si.Name == r.PathValue("name") {
			writeJSON(w, http.StatusOK, si, s.log)
			return
		}
	}
	s.writeError(w, r, titleGet, fsm.ErrNotFound)
}

// zoneProxyOverview is Kuma's ZoneIngressOverview / ZoneEgressOverview.
func (s *server) zoneProxyOverviews(t resource.Type) ([]map[string]any, error) {
	specKey, insightKey := "zoneIngress", "zoneIngressInsight"
	if t == resource.TypeZoneEgress {
		specKey, insightKey = "zoneEgress", "zoneEgressInsight"
	}
	items := s.state.List(t, "")
	out := make([]map[string]any, 0, len(items))
	for _, res := range items {
		raw, err := json.Marshal(res)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", res.Key(), err)
		}
		fields := map[string]any{}
		if err := json.Unmarshal(raw, &fields); err != nil {
			return nil, fmt.Errorf("split %s: %w", res.Key(), err)
		}
		ov := map[string]any{"type": string(t) + "Overview", insightKey: map[string]any{"subscriptions": []any{}}}
		for _, k := range metaFields {
			if v, ok := fields[k]; ok && k != "type" {
				ov[k] = v
			}
			delete(fields, k)
		}
		ov[specKey] = fields
		out = append(out, ov)
	}
	return out, nil
}

func (s *server) zoneProxyOverviewHandler(t resource.Type) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out, err := s.zoneProxyOverviews(t)
		if err != nil {
			s.writeError(w, r, titleList, err)
			return
		}
		writeList(s, w, r, out)
	}
}

// inspectEntry is one row of Kuma's DataplaneInspectEntryList.
type inspectEntry struct {
	Type            string                       `json:"type"`
	Name            string                       `json:"name,omitempty"`
	Service         string                       `json:"service,omitempty"`
	MatchedPolicies map[string][]json.RawMessage `json:"matchedPolicies"`
}

// handleDataplanePolicies serves /meshes/{mesh}/dataplanes/{name}/policies
// (Kuma's SidecarDataplane inspect answer): the targetRef policies whose
// top-level targetRef selects the proxy.
func (s *server) handleDataplanePolicies(w http.ResponseWriter, r *http.Request) {
	const title = "Could not inspect the dataplane"
	mesh, name := r.PathValue("mesh"), r.PathValue("name")
	dp, ok := s.state.Get(resource.Key{Type: resource.TypeDataplane, Mesh: mesh, Name: name})
	if !ok {
		s.writeError(w, r, title, fsm.ErrNotFound)
		return
	}
	spec, _ := dp.Spec.(*resource.DataplaneSpec)
	entry := inspectEntry{Type: "dataplane", Name: name, MatchedPolicies: map[string][]json.RawMessage{}}
	for _, d := range resource.Descriptors() {
		if d.Scope != resource.ScopeMesh || !d.SpecUnderSpecField {
			continue
		}
		for _, p := range s.state.List(d.Type, mesh) {
			tr, ok := p.Spec.(interface{ EffectiveTargetRef() resource.TargetRef })
			if !ok || !selects(tr.EffectiveTargetRef(), dp, spec) {
				continue
			}
			meta, err := json.Marshal(struct {
				Type             string            `json:"type"`
				Mesh             string            `json:"mesh"`
				Name             string            `json:"name"`
				CreationTime     time.Time         `json:"creationTime"`
				ModificationTime time.Time         `json:"modificationTime"`
				Labels           map[string]string `json:"labels,omitempty"`
				KRI              string            `json:"kri,omitempty"`
			}{string(p.Type), p.Mesh, p.Name, p.CreationTime, p.ModificationTime, p.Labels, p.KRI()})
			if err != nil {
				s.writeError(w, r, title, err)
				return
			}
			entry.MatchedPolicies[string(d.Type)] = append(entry.MatchedPolicies[string(d.Type)], meta)
		}
	}
	items := []inspectEntry{}
	if len(entry.MatchedPolicies) > 0 {
		items = append(items, entry)
	}
	writeJSON(w, http.StatusOK, map[string]any{"kind": "SidecarDataplane", "total": len(items), "items": items}, s.log)
}

// selects reports whether a top-level targetRef picks the Dataplane dp.
func selects(ref resource.TargetRef, dp *resource.Resource, spec *resource.DataplaneSpec) bool {
	switch ref.Kind {
	case "Mesh":
		return true
	case "Dataplane":
		return ref.Name == "" || ref.Name == dp.Name
	case "MeshService", "MeshServiceSubset":
		return slices.Contains(dataplaneServices(spec), ref.Name)
	case "MeshSubset":
		if spec == nil {
			return false
		}
		for _, in := range spec.Networking.Inbound {
			if subset(ref.Tags, in.Tags) {
				return true
			}
		}
		return spec.Networking.Gateway != nil && subset(ref.Tags, spec.Networking.Gateway.Tags)
	}
	return false
}

func subset(want, have map[string]string) bool {
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if have[k] != want[k] {
			return false
		}
	}
	return true
}

// handleProxyAdmin answers Kuma's Envoy admin passthrough (config dump,
// stats, clusters): a replica does not reach proxies' admin ports.
func (s *server) handleProxyAdmin(w http.ResponseWriter, r *http.Request) {
	s.writeError(w, r, "Could not inspect the proxy", &Error{Status: http.StatusNotImplemented,
		Title:  "Could not inspect the proxy",
		Detail: fmt.Sprintf("%s of a proxy is not served by this control plane: read it from the proxy's own admin address (kuma-dp --admin-addr)", opName(r.URL.Path))})
}

// opName is the last segment of path without Kuma's leading "_" (_config).
func opName(path string) string {
	return strings.TrimPrefix(path[strings.LastIndexByte(path, '/')+1:], "_")
}
