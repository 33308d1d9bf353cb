package envoy

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"sigs.k8s.io/yaml"
)

// RelayCluster is the bootstrap's static cluster through which Envoy reaches
// the relay.
const RelayCluster = "kuma-dp-relay"

// DefaultAdminAddr is Envoy's admin address unless told otherwise (kuma-dp's
// --envoy-admin-addr).
const DefaultAdminAddr = "127.0.0.1:9902"

// httpProtocolOptionsKey is the typed_extension_protocol_options key Envoy
// reads a cluster's HTTP/2 setting from.
const httpProtocolOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// BootstrapOptions is what a bootstrap depends on.
type BootstrapOptions struct {
	// NodeID is "{mesh}.{name}" (required).
	NodeID string
	// Cluster is node.cluster: the Dataplane's first kuma.io/service tag;
	// "" leaves it out.
	Cluster string
	// AdminAddr is Envoy's admin listener, ip:port [DefaultAdminAddr]; port
	// 0 lets Envoy choose (see --admin-address-path).
	AdminAddr string
	// RelayAddr is the relay's ip:port (required).
	RelayAddr string
}

// Bootstrap returns Envoy's v3 bootstrap, as YAML: node, admin, ADS (gRPC,
// v3) to the relay through the static HTTP/2 cluster RelayCluster, and
// listeners and clusters from ADS. It passes ValidateAll.
func Bootstrap(opts BootstrapOptions) ([]byte, error) {
	b, err := bootstrapProto(opts)
	if err != nil {
		return nil, err
	}
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	out, err := yaml.JSONToYAML(js)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return out, nil
}

func bootstrapProto(opts BootstrapOptions) (*bootstrapv3.Bootstrap, error) {
	var errs []error
	if err := checkNodeID(opts.NodeID); err != nil {
		errs = append(errs, err)
	}
	admin, err := parseAddr(cmp.Or(opts.AdminAddr, DefaultAdminAddr))
	if err != nil {
		errs = append(errs, fmt.Errorf("AdminAddr: %w", err))
	}
	relay, err := parseAddr(opts.RelayAddr)
	if err != nil {
		errs = append(errs, fmt.Errorf("RelayAddr: %w", err))
	} else if relay.Port() == 0 {
		errs = append(errs, fmt.Errorf("RelayAddr: %s: port 0", opts.RelayAddr))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}

	h2, err := anypb.New(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &core.Http2ProtocolOptions{},
				},
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	ads := func() *core.ConfigSource {
		return &core.ConfigSource{
			ConfigSourceSpecifier: &core.ConfigSource_Ads{Ads: &core.AggregatedConfigSource{}},
			ResourceApiVersion:    core.ApiVersion_V3,
		}
	}
	b := &bootstrapv3.Bootstrap{
		Node: &core.Node{Id: opts.NodeID, Cluster: opts.Cluster},
		Admin: &bootstrapv3.Admin{
			Address: socketAddress(admin),
		},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &core.ApiConfigSource{
				ApiType:             core.ApiConfigSource_GRPC,
				TransportApiVersion: core.ApiVersion_V3,
				GrpcServices: []*core.GrpcService{{
					TargetSpecifier: &core.GrpcService_EnvoyGrpc_{EnvoyGrpc: &core.GrpcService_EnvoyGrpc{ClusterName: RelayCluster}},
				}},
				SetNodeOnFirstMessageOnly: true,
			},
			LdsConfig: ads(),
			CdsConfig: ads(),
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Clusters: []*clusterv3.Cluster{{
				Name:                 RelayCluster,
				ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
				ConnectTimeout:       durationpb.New(time.Second),
				TypedExtensionProtocolOptions: map[string]*anypb.Any{
					httpProtocolOptionsKey: h2,
				},
				LoadAssignment: &endpointv3.ClusterLoadAssignment{
					ClusterName: RelayCluster,
					Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
						HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(relay)}},
					}}}},
				},
			}},
		},
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return b, nil
}

func checkNodeID(id string) error {
	if id == "" {
		return errors.New("NodeID: required, as {mesh}.{name}")
	}
	if i := strings.IndexByte(id, '.'); i <= 0 || i == len(id)-1 {
		return fmt.Errorf("NodeID: %q must be {mesh}.{name}", id)
	}
	return nil
}

// parseAddr accepts ip:port only: Envoy's admin and STATIC endpoints take
// no host names.
func parseAddr(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q must be ip:port", s)
	}
	return ap, nil
}

func socketAddress(ap netip.AddrPort) *core.Address {
	return &core.Address{Address: &core.Address_SocketAddress{SocketAddress: &core.SocketAddress{
		Protocol:      core.SocketAddress_TCP,
		Address:       ap.Addr().Unmap().String(),
		PortSpecifier: &core.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
	}}}
}
