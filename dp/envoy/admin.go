package envoy

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/kuma-ha/kuma-ha/dp/proxy"
)

// Paths of Envoy's admin API the engine uses.
const (
	adminListeners = "/listeners?format=json"
	adminClusters  = "/clusters?format=json"
	adminDrain     = "/drain_listeners" // stop accepting at once; connections stay
)

// adminStats asks for the listener and TCP proxy stats only.
var adminStats = "/stats?" + url.Values{"format": {"json"}, "filter": {`^(listener|tcp)\.`}}.Encode()

// envoyConnectTimeout is Envoy's default cluster connect_timeout.
const envoyConnectTimeout = 5 * time.Second

// admin is a client of one Envoy's admin API.
type admin struct {
	base string // http://ip:port
	hc   *http.Client
}

// newAdminClient is the HTTP client for Envoy's admin. No keep-alive: the
// requests are few, and an idle connection would outlive Shutdown.
func newAdminClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

func (a admin) do(ctx context.Context, method, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("envoy admin: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("envoy admin %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("envoy admin %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

func (a admin) getProto(ctx context.Context, path string, m proto.Message) error {
	body, err := a.do(ctx, http.MethodGet, path)
	if err != nil {
		return err
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(body, m); err != nil {
		return fmt.Errorf("envoy admin %s: %w", path, err)
	}
	return nil
}

// stats returns the counters and gauges of /stats?format=json by name.
func (a admin) stats(ctx context.Context) (map[string]uint64, error) {
	body, err := a.do(ctx, http.MethodGet, adminStats)
	if err != nil {
		return nil, err
	}
	return parseStats(body)
}

func parseStats(body []byte) (map[string]uint64, error) {
	var doc struct {
		Stats []struct {
			Name  string          `json:"name"`
			Value json.RawMessage `json:"value"`
		} `json:"stats"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("envoy admin stats: %w", err)
	}
	out := make(map[string]uint64, len(doc.Stats))
	for _, s := range doc.Stats {
		if s.Name == "" { // the histograms entry
			continue
		}
		v, err := strconv.ParseUint(strings.Trim(string(s.Value), `"`), 10, 64)
		if err != nil { // a text readout
			continue
		}
		out[s.Name] = v
	}
	return out, nil
}

// activeConnections sums downstream_cx_active over Envoy's listeners: not
// the admin listener, not the per-worker copies.
func activeConnections(stats map[string]uint64) uint64 {
	var n uint64
	for name, v := range stats {
		mid, ok := strings.CutPrefix(name, "listener.")
		if !ok {
			continue
		}
		if mid, ok = strings.CutSuffix(mid, ".downstream_cx_active"); !ok || mid == "admin" {
			continue
		}
		if i := strings.LastIndexByte(mid, '.'); i >= 0 && strings.HasPrefix(mid[i+1:], "worker_") {
			continue
		}
		n += v
	}
	return n
}

// envoyView is what Envoy's admin says.
type envoyView struct {
	listeners *adminv3.Listeners
	clusters  *adminv3.Clusters
	stats     map[string]uint64
}

func (a admin) view(ctx context.Context) (*envoyView, error) {
	v := &envoyView{listeners: &adminv3.Listeners{}, clusters: &adminv3.Clusters{}}
	if err := a.getProto(ctx, adminListeners, v.listeners); err != nil {
		return nil, err
	}
	if err := a.getProto(ctx, adminClusters, v.clusters); err != nil {
		return nil, err
	}
	var err error
	if v.stats, err = a.stats(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// buildStatus describes cfg as Envoy runs it; with v nil (Envoy's admin
// unreachable) only what cfg says: names, configured addresses, endpoints.
//
// From Envoy: a listener's bound address, Active and Total (listener
// stats), NoCluster (its TCP proxies' downstream_cx_no_route, which is also
// Failed), BytesIn and BytesOut (their rx and tx byte totals), and each
// endpoint's active connections. Envoy counts missing endpoints and failed
// connects per cluster, not per listener: NoEndpoint and ConnectFailed stay
// 0, and so do Draining and EjectedUntil. TCP proxy stats are kept per
// stat_prefix: listeners whose TCP proxies share one (two outbounds to one
// service) each show the sum.
func buildStatus(cfg proxy.Config, v *envoyView) proxy.Status {
	st := proxy.Status{Listeners: []proxy.ListenerStatus{}, Clusters: []proxy.ClusterStatus{}}

	bound := map[string]string{}
	if v != nil {
		for _, ls := range v.listeners.GetListenerStatuses() {
			bound[ls.GetName()] = addrString(ls.GetLocalAddress())
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Listeners)) {
		l := cfg.Listeners[name]
		s := proxy.ListenerStatus{Name: name, Address: addrString(l.GetAddress()), Direction: direction(l)}
		if v != nil {
			if a, ok := bound[name]; ok {
				s.Address = a
				delete(bound, name)
			} else {
				s.Error = "not active in Envoy (not received yet, or rejected: see the NACK in the log)"
			}
			prefix := "listener." + listenerStatPrefix(l) + "."
			s.Active = int64(v.stats[prefix+"downstream_cx_active"])
			s.Total = v.stats[prefix+"downstream_cx_total"]
			for _, tp := range tcpStatPrefixes(l) {
				p := "tcp." + tp + "."
				s.NoCluster += v.stats[p+"downstream_cx_no_route"]
				s.BytesIn += v.stats[p+"downstream_cx_rx_bytes_total"]
				s.BytesOut += v.stats[p+"downstream_cx_tx_bytes_total"]
			}
			s.Failed = s.NoCluster
		}
		st.Listeners = append(st.Listeners, s)
	}
	// Listeners Envoy runs that the config no longer has (an update in flight).
	for _, name := range slices.Sorted(maps.Keys(bound)) {
		st.Listeners = append(st.Listeners, proxy.ListenerStatus{Name: name, Address: bound[name]})
	}
	slices.SortStableFunc(st.Listeners, func(a, b proxy.ListenerStatus) int { return cmp.Compare(a.Name, b.Name) })

	running := map[string]*adminv3.ClusterStatus{}
	if v != nil {
		for _, cs := range v.clusters.GetClusterStatuses() {
			if cs.GetAddedViaApi() { // not the static relay cluster
				running[cs.GetName()] = cs
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.Clusters)) {
		c := cfg.Clusters[name]
		cs := proxy.ClusterStatus{
			Name:           name,
			ConnectTimeout: connectTimeout(c).String(),
			LbPolicy:       c.GetLbPolicy().String(),
			Endpoints:      []proxy.EndpointStatus{},
		}
		if r := running[name]; r != nil {
			cs.Endpoints = hostStatuses(r)
			delete(running, name)
		} else {
			for _, a := range configEndpoints(cfg, c) {
				cs.Endpoints = append(cs.Endpoints, proxy.EndpointStatus{Address: a})
			}
		}
		st.Clusters = append(st.Clusters, cs)
	}
	for _, name := range slices.Sorted(maps.Keys(running)) {
		st.Clusters = append(st.Clusters, proxy.ClusterStatus{Name: name, Endpoints: hostStatuses(running[name])})
	}
	slices.SortStableFunc(st.Clusters, func(a, b proxy.ClusterStatus) int { return cmp.Compare(a.Name, b.Name) })
	return st
}

func hostStatuses(cs *adminv3.ClusterStatus) []proxy.EndpointStatus {
	out := []proxy.EndpointStatus{}
	for _, h := range cs.GetHostStatuses() {
		e := proxy.EndpointStatus{Address: addrString(h.GetAddress())}
		for _, m := range h.GetStats() {
			if m.GetName() == "cx_active" {
				e.Active = int64(m.GetValue())
			}
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b proxy.EndpointStatus) int { return cmp.Compare(a.Address, b.Address) })
	return out
}

func configEndpoints(cfg proxy.Config, c *clusterv3.Cluster) []string {
	cla := c.GetLoadAssignment()
	if c.GetType() == clusterv3.Cluster_EDS {
		cla = cfg.Endpoints[cmp.Or(c.GetEdsClusterConfig().GetServiceName(), c.GetName())]
	}
	var out []string
	for _, lle := range cla.GetEndpoints() {
		for _, e := range lle.GetLbEndpoints() {
			out = append(out, addrString(e.GetEndpoint().GetAddress()))
		}
	}
	slices.Sort(out)
	return out
}

func connectTimeout(c *clusterv3.Cluster) time.Duration {
	if c.GetConnectTimeout() == nil {
		return envoyConnectTimeout
	}
	return c.GetConnectTimeout().AsDuration()
}

func direction(l *listenerv3.Listener) string {
	switch l.GetTrafficDirection() {
	case core.TrafficDirection_INBOUND:
		return proxy.DirectionInbound
	case core.TrafficDirection_OUTBOUND:
		return proxy.DirectionOutbound
	}
	return ""
}

func addrString(a *core.Address) string {
	sa := a.GetSocketAddress()
	if sa == nil {
		if p := a.GetPipe().GetPath(); p != "" {
			return p
		}
		return ""
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
}

// listenerStatPrefix is the middle of a listener's stat names: its
// stat_prefix, or its address as Envoy writes it, ':' made '_'
// ("127.0.0.1_10001", "[__1]_10001").
func listenerStatPrefix(l *listenerv3.Listener) string {
	if p := l.GetStatPrefix(); p != "" {
		return sanitizeStat(p)
	}
	return sanitizeStat(addrString(l.GetAddress()))
}

// tcpStatPrefixes are the stat_prefix of the listener's TCP proxies.
func tcpStatPrefixes(l *listenerv3.Listener) []string {
	var out []string
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			tc := f.GetTypedConfig()
			if tc == nil || tc.GetTypeUrl() != tcpProxyTypeURL {
				continue
			}
			tcp := &tcpv3.TcpProxy{}
			if err := tc.UnmarshalTo(tcp); err == nil && tcp.GetStatPrefix() != "" {
				out = append(out, sanitizeStat(tcp.GetStatPrefix()))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

var tcpProxyTypeURL = "type.googleapis.com/" + string((&tcpv3.TcpProxy{}).ProtoReflect().Descriptor().FullName())

func sanitizeStat(s string) string { return strings.ReplaceAll(s, ":", "_") }
