package agent

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kuma-ha/kuma-ha/dp/proxy"
	"github.com/kuma-ha/kuma-ha/dp/xdsclient"
)

// Status is what GET /status answers.
type Status struct {
	Node string `json:"node"`
	// Ready: a config is being served and the proxy is not draining.
	Ready bool `json:"ready"`
	// Connected: a stream to a replica is open; Replica is its xDS address.
	Connected bool   `json:"connected"`
	Replica   string `json:"replica"`
	// Frozen: every known replica was tried and none answered; the proxy
	// serves its last good config until one does.
	Frozen      bool       `json:"frozen"`
	FrozenSince *time.Time `json:"frozenSince"`
	// ConfigSource is where the config in use came from: "control-plane",
	// "state-dir" (saved by an earlier run), or "" (none yet).
	ConfigSource string `json:"configSource"`
	// ConfigVersion is the version of each type in use (lds, cds, eds).
	ConfigVersion map[string]string `json:"configVersion"`
	// ConfigServer is the replica the config in use came from.
	ConfigServer string `json:"configServer"`
	// LastUpdate is when the config in use was accepted from a replica.
	LastUpdate *time.Time `json:"lastUpdate"`
	// AppliedAt is when the engine last took a config.
	AppliedAt  *time.Time `json:"appliedAt"`
	ApplyError string     `json:"applyError,omitempty"`
	SaveError  string     `json:"saveError,omitempty"`
	Draining   bool       `json:"draining"`
	// Replicas are the xDS addresses known (given and discovered).
	Replicas   []string `json:"replicas"`
	Reconnects int      `json:"reconnects"`
	NACKs      int      `json:"nacks"`
	LastError  string   `json:"lastError,omitempty"`
	// Listeners and Clusters are the engine's, with connection counts.
	Listeners []proxy.ListenerStatus `json:"listeners"`
	Clusters  []proxy.ClusterStatus  `json:"clusters"`
}

var shortTypes = map[string]string{xdsclient.TypeListener: "lds", xdsclient.TypeCluster: "cds", xdsclient.TypeEndpoint: "eds"}

// Status returns the agent's status.
func (a *Agent) Status() Status {
	st := a.client.Status()
	a.mu.Lock()
	out := Status{
		Node:         a.cfg.NodeID,
		Ready:        a.mu.applied != nil && !a.mu.draining,
		Connected:    st.Connected,
		Replica:      st.Server,
		Frozen:       a.mu.frozen,
		ConfigSource: a.mu.source,
		Draining:     a.mu.draining,
		Replicas:     st.Servers,
		Reconnects:   st.Reconnects,
		NACKs:        st.NACKs,
		LastError:    errString(st.LastError),
		ApplyError:   errString(a.mu.applyErr),
		SaveError:    errString(a.mu.saveErr),
	}
	if a.mu.frozen {
		t := a.mu.frozenSince
		out.FrozenSince = &t
	}
	if snap := a.mu.applied; snap != nil {
		out.ConfigVersion = map[string]string{}
		for typ, v := range snap.Versions {
			out.ConfigVersion[shortTypes[typ]] = v
		}
		out.ConfigServer = snap.Server
		if !snap.UpdatedAt.IsZero() {
			t := snap.UpdatedAt
			out.LastUpdate = &t
		}
		t := a.mu.appliedAt
		out.AppliedAt = &t
	}
	a.mu.Unlock()
	ps := a.cfg.Engine.Status()
	out.Listeners, out.Clusters = ps.Listeners, ps.Clusters
	return out
}

func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		st := a.Status()
		switch {
		case st.Draining:
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": "draining"})
		case !st.Ready:
			reason := "no config yet"
			if st.LastError != "" {
				reason += ": " + st.LastError
			}
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "reason": reason})
		default:
			writeJSON(w, http.StatusOK, map[string]any{"ready": true, "frozen": st.Frozen})
		}
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, a.Status())
	})
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, _ *http.Request) {
		a.mu.Lock()
		snap := a.mu.applied
		a.mu.Unlock()
		if snap == nil {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": "no config yet"})
			return
		}
		out, err := configJSON(snap)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]any{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": fmt.Sprintf("%s %s: not found; try /ready, /status or /config", r.Method, r.URL.Path)})
	})
	return mux
}

// configJSON is the config in use, each resource in Envoy's JSON form.
func configJSON(s *xdsclient.Snapshot) (map[string]any, error) {
	out := map[string]any{"versions": s.Versions, "server": s.Server, "updatedAt": s.UpdatedAt}
	enc := func(key string, names []string, get func(string) proto.Message) error {
		list := make([]json.RawMessage, 0, len(names))
		for _, n := range names {
			b, err := protojson.Marshal(get(n))
			if err != nil {
				return fmt.Errorf("%s %q: %w", key, n, err)
			}
			list = append(list, b)
		}
		out[key] = list
		return nil
	}
	if err := enc("listeners", slices.Sorted(maps.Keys(s.Listeners)), func(n string) proto.Message { return s.Listeners[n] }); err != nil {
		return nil, err
	}
	if err := enc("clusters", slices.Sorted(maps.Keys(s.Clusters)), func(n string) proto.Message { return s.Clusters[n] }); err != nil {
		return nil, err
	}
	if err := enc("endpoints", slices.Sorted(maps.Keys(s.Endpoints)), func(n string) proto.Message { return s.Endpoints[n] }); err != nil {
		return nil, err
	}
	return out, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
