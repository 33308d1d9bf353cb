package ops

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// The views Kuma's kumactl inspects, in Kuma's shapes.
func TestKumaInspectViews(t *testing.T) {
	e := newEnv(t, "standalone")
	e.mustStatus(e.do("PUT", "/meshes/default/dataplanes/web-1", dataplaneJSON("default", "web-1", 8080)), http.StatusCreated)
	e.mustStatus(e.do("PUT", "/meshes/default/meshtimeouts/t1", `{"type":"MeshTimeout","mesh":"default","name":"t1","kri":"kri_mt_default___t1_",
"spec":{"targetRef":{"kind":"Mesh"},"from":[{"targetRef":{"kind":"Mesh"},"default":{"idleTimeout":"10s"}}]}}`), http.StatusCreated)
	e.mustStatus(e.do("PUT", "/meshes/default/meshtrafficpermissions/other", `{"type":"MeshTrafficPermission","mesh":"default","name":"other",
"spec":{"targetRef":{"kind":"MeshService","name":"api"},"from":[{"targetRef":{"kind":"Mesh"},"default":{"action":"Allow"}}]}}`), http.StatusCreated)

	decode := func(path string) map[string]any {
		t.Helper()
		rec := e.mustStatus(e.do("GET", path, ""), http.StatusOK)
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		return out
	}
	item0 := func(path string) map[string]any {
		t.Helper()
		items, _ := decode(path)["items"].([]any)
		if len(items) == 0 {
			t.Fatalf("GET %s: no items", path)
		}
		return items[0].(map[string]any)
	}

	mi := item0("/mesh-insights")
	if mi["type"] != "MeshInsight" || mi["name"] != "default" {
		t.Errorf("mesh insight = %v", mi)
	}
	if dps := mi["dataplanes"].(map[string]any); dps["total"] != 1.0 || dps["offline"] != 1.0 {
		t.Errorf("mesh insight dataplanes = %v, want total 1, offline 1", dps)
	}
	if p := mi["policies"].(map[string]any)["MeshTimeout"]; p == nil || p.(map[string]any)["total"] != 1.0 {
		t.Errorf("mesh insight policies = %v", mi["policies"])
	}

	si := item0("/meshes/default/service-insights")
	if si["type"] != "ServiceInsight" || si["name"] != "web" || si["status"] != "offline" || si["dataplanes"].(map[string]any)["total"] != 1.0 {
		t.Errorf("service insight = %v", si)
	}

	ov := item0("/meshes/default/dataplanes/_overview")
	if ov["type"] != "DataplaneOverview" || ov["kri"] != "kri_dp_default___web-1_" || ov["dataplane"] == nil {
		t.Errorf("dataplane overview = %v", ov)
	}
	if _, inSpec := ov["dataplane"].(map[string]any)["kri"]; inSpec {
		t.Errorf("kri leaked into the dataplane spec: %v", ov)
	}

	pol := decode("/meshes/default/dataplanes/web-1/policies")
	body, _ := json.Marshal(pol)
	if pol["kind"] != "SidecarDataplane" || !strings.Contains(string(body), `"MeshTimeout":[{`) || strings.Contains(string(body), `"other"`) {
		t.Errorf("dataplane policies = %s, want t1 matched and other (for service api) not", body)
	}

	e.mustStatus(e.do("PUT", "/zoneingresses/zi-1", `{"type":"ZoneIngress","name":"zi-1","networking":{"address":"10.0.0.9","port":10001}}`), http.StatusCreated)
	zi := item0("/zoneingresses/_overview")
	if zi["type"] != "ZoneIngressOverview" || zi["name"] != "zi-1" || zi["zoneIngress"] == nil || zi["zoneIngressInsight"] == nil {
		t.Errorf("zone ingress overview = %v", zi)
	}
	if got := decode("/zoneegresses/_overview"); got["total"] != 0.0 {
		t.Errorf("zone egress overviews = %v, want none", got)
	}

	for _, op := range []string{"xds", "stats", "clusters", "_config"} { // the paths of Kuma's kumactl inspect dataplane --type
		rec := e.do("GET", "/meshes/default/dataplanes/web-1/"+op, "")
		if rec.Code != http.StatusNotImplemented || !strings.Contains(rec.Body.String(), "admin") {
			t.Errorf("%s passthrough: %d %s, want 501 naming the proxy's admin address", op, rec.Code, rec.Body)
		}
		if want := `"` + strings.TrimPrefix(op, "_") + " of a proxy"; !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s passthrough: %s, want the detail to start with %s", op, rec.Body, want)
		}
	}
}

// Kuma's kumactl lists types this control plane does not serve; the answer is an empty list.
func TestListKumaOnlyTypes(t *testing.T) {
	e := newEnv(t, "standalone")
	for _, p := range []string{"/global-secrets", "/meshes/default/secrets", "/meshes/default/meshgateways"} {
		if l := decodeList(t, e.mustStatus(e.do("GET", p, ""), http.StatusOK)); l.Total != 0 {
			t.Errorf("GET %s: total %d, want 0", p, l.Total)
		}
	}
	e.mustStatus(e.do("GET", "/meshes/default/no-such-things", ""), http.StatusNotFound)
	// kumactl 2.9 writes zone ingresses under /zone-ingresses.
	e.mustStatus(e.do("PUT", "/zone-ingresses/zi-2", `{"type":"ZoneIngress","name":"zi-2","networking":{"address":"10.0.0.9","port":10001}}`), http.StatusCreated)
	e.mustStatus(e.do("GET", "/zoneingresses/zi-2", ""), http.StatusOK)
}
