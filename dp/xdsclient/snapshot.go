package xdsclient

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// The type URLs the client subscribes to.
const (
	TypeListener = resourcev3.ListenerType
	TypeCluster  = resourcev3.ClusterType
	TypeEndpoint = resourcev3.EndpointType
)

// Snapshot is the config a client has accepted. It is immutable: a client
// publishes a new Snapshot for every change and never modifies one it has
// handed out, and callers must not modify it (nor the messages in it, which
// may be shared with other snapshots and other clients of a Fleet).
type Snapshot struct {
	Listeners map[string]*listenerv3.Listener
	Clusters  map[string]*clusterv3.Cluster
	// Endpoints are the load assignments by cluster (EDS service) name.
	Endpoints map[string]*endpointv3.ClusterLoadAssignment
	// Versions is, per type URL, the version of the last accepted response:
	// version_info (state of the world) or system_version_info (delta).
	Versions map[string]string
	// ResourceVersions is, per type URL, each resource's version (delta
	// only; nil in state of the world).
	ResourceVersions map[string]map[string]string
	// Server is the replica the last accepted change came from.
	Server string
	// UpdatedAt is when the last change was accepted.
	UpdatedAt time.Time
}

func emptySnapshot() *Snapshot {
	return &Snapshot{
		Listeners: map[string]*listenerv3.Listener{},
		Clusters:  map[string]*clusterv3.Cluster{},
		Endpoints: map[string]*endpointv3.ClusterLoadAssignment{},
		Versions:  map[string]string{},
	}
}

// clone copies the top-level maps that change (the caller replaces the
// ones it modifies); the messages are shared.
func (s *Snapshot) clone() *Snapshot {
	n := *s
	n.Versions = maps.Clone(s.Versions)
	if n.Versions == nil {
		n.Versions = map[string]string{}
	}
	if s.ResourceVersions != nil {
		n.ResourceVersions = maps.Clone(s.ResourceVersions)
	}
	return &n
}

// Has reports whether the snapshot holds an accepted response of typeURL.
func (s *Snapshot) Has(typeURL string) bool {
	_, ok := s.Versions[typeURL]
	return ok
}

// Complete reports whether listeners, clusters and, if any cluster uses
// EDS, endpoints have been received.
func (s *Snapshot) Complete() bool {
	if !s.Has(TypeListener) || !s.Has(TypeCluster) {
		return false
	}
	return len(edsNames(s.Clusters)) == 0 || s.Has(TypeEndpoint)
}

// edsNames returns the sorted EDS service names of the EDS clusters.
func edsNames(clusters map[string]*clusterv3.Cluster) []string {
	var out []string
	for name, c := range clusters {
		if c.GetType() != clusterv3.Cluster_EDS {
			continue
		}
		if sn := c.GetEdsClusterConfig().GetServiceName(); sn != "" {
			name = sn
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// snapshotFormat versions the serialised form.
const snapshotFormat = 1

type snapshotJSON struct {
	Format    int               `json:"format"`
	Server    string            `json:"server,omitempty"`
	UpdatedAt time.Time         `json:"updatedAt"`
	Versions  map[string]string `json:"versions,omitempty"`
	Resources []resourceJSON    `json:"resources"`
}

type resourceJSON struct {
	TypeURL string `json:"typeUrl"`
	Name    string `json:"name"`
	Version string `json:"version,omitempty"` // delta only
	Value   []byte `json:"value"`             // binary protobuf
}

var marshalOpts = proto.MarshalOptions{Deterministic: true}

// MarshalJSON serialises the snapshot (resources as binary protobuf in
// base64), so that it can be persisted and given back as Config.Initial.
func (s *Snapshot) MarshalJSON() ([]byte, error) {
	out := snapshotJSON{Format: snapshotFormat, Server: s.Server, UpdatedAt: s.UpdatedAt, Versions: s.Versions,
		Resources: []resourceJSON{}}
	add := func(typeURL, name string, m proto.Message) error {
		b, err := marshalOpts.Marshal(m)
		if err != nil {
			return fmt.Errorf("marshal %s %q: %w", typeURL, name, err)
		}
		out.Resources = append(out.Resources, resourceJSON{TypeURL: typeURL, Name: name,
			Version: s.ResourceVersions[typeURL][name], Value: b})
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(s.Listeners)) {
		if err := add(TypeListener, name, s.Listeners[name]); err != nil {
			return nil, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Clusters)) {
		if err := add(TypeCluster, name, s.Clusters[name]); err != nil {
			return nil, err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.Endpoints)) {
		if err := add(TypeEndpoint, name, s.Endpoints[name]); err != nil {
			return nil, err
		}
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads a snapshot written by MarshalJSON; every resource is
// decoded and validated again.
func (s *Snapshot) UnmarshalJSON(data []byte) error {
	var in snapshotJSON
	if err := json.Unmarshal(data, &in); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if in.Format != snapshotFormat {
		return fmt.Errorf("snapshot: format %d is not supported (want %d)", in.Format, snapshotFormat)
	}
	n := emptySnapshot()
	n.Server, n.UpdatedAt = in.Server, in.UpdatedAt
	if in.Versions != nil {
		n.Versions = in.Versions
	}
	for i, r := range in.Resources {
		name, m, err := decodeBytes(r.TypeURL, r.Value)
		if err != nil {
			return fmt.Errorf("snapshot: resources[%d]: %w", i, err)
		}
		if name != r.Name {
			return fmt.Errorf("snapshot: resources[%d]: name %q does not match the resource's %q", i, r.Name, name)
		}
		switch r.TypeURL {
		case TypeListener:
			n.Listeners[name] = m.(*listenerv3.Listener)
		case TypeCluster:
			n.Clusters[name] = m.(*clusterv3.Cluster)
		case TypeEndpoint:
			n.Endpoints[name] = m.(*endpointv3.ClusterLoadAssignment)
		}
		if r.Version != "" {
			if n.ResourceVersions == nil {
				n.ResourceVersions = map[string]map[string]string{}
			}
			if n.ResourceVersions[r.TypeURL] == nil {
				n.ResourceVersions[r.TypeURL] = map[string]string{}
			}
			n.ResourceVersions[r.TypeURL][name] = r.Version
		}
	}
	*s = *n
	return nil
}
