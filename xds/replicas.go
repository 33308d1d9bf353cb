package xds

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Replica discovery: a proxy given one replica's xDS address learns the
// others' from it, on the same port, so that it can fail over to any of
// them. The service is one unary method with well-known message types
// (no generated code): an empty request, and a Struct answer
//
//	{"replicas": [{"name": "cp-1", "xdsAddress": "10.0.0.1:5678", "healthy": true}, ...]}
//
// listing every replica gossip knows, this one included, sorted by name.
// dp/xdsclient repeats these names (it imports no server package).
const (
	ReplicasService = "kumaha.xds.v1.Replicas"
	ReplicasMethod  = "/" + ReplicasService + "/List"
)

type replicasServer interface {
	listReplicas(ctx context.Context, _ *emptypb.Empty) (*structpb.Struct, error)
}

var replicasDesc = grpc.ServiceDesc{
	ServiceName: ReplicasService,
	HandlerType: (*replicasServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "List",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			return srv.(replicasServer).listReplicas(ctx, in)
		},
	}},
}

func (s *Server) listReplicas(context.Context, *emptypb.Empty) (*structpb.Struct, error) {
	var list []any
	for _, m := range s.opts.Cluster.Members() {
		if m.XDSAddr == "" {
			continue
		}
		healthy := m.Alive
		if m.Name == s.opts.Cluster.Name() {
			healthy, _ = s.opts.Cluster.Ready()
		}
		list = append(list, map[string]any{"name": m.Name, "xdsAddress": m.XDSAddr, "healthy": healthy})
	}
	return structpb.NewStruct(map[string]any{"replicas": list})
}
