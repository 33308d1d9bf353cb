package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// healthyAfter: a stream that lived this long resets the backoff even if
// it carried no response (a reconnect with every version current gets none).
const healthyAfter = 5 * time.Second

// session is one stream to one replica.
type session struct {
	c      *Client
	addr   string
	opened bool
	start  time.Time
	got    bool // a response arrived
}

func (s *session) healthy() bool {
	return s.got || (s.opened && time.Since(s.start) > healthyAfter)
}

func (s *session) run(ctx context.Context) error {
	cc, release, err := s.c.connect(s.addr)
	if err != nil {
		return err
	}
	defer release()
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(nil); wg.Wait() }()
	if s.c.cfg.ProbeInterval > 0 {
		wg.Go(func() { s.runProbe(ctx, cc, cancel) })
	}
	if s.c.cfg.Delta {
		err = s.runDelta(ctx, cc)
	} else {
		err = s.runSotW(ctx, cc)
	}
	if cause := context.Cause(ctx); parent.Err() == nil && errors.Is(cause, errSilent) {
		return cause
	}
	return err
}

// errSilent ends a stream to a replica that stopped answering.
var errSilent = errors.New("replica stopped answering")

// runProbe calls the replica's replica-discovery method every
// ProbeInterval over the stream's connection and ends the stream after
// ProbeFailures calls in a row got no answer within ProbeTimeout: a paused
// or cut-off replica keeps a TCP connection open and sends nothing, which
// the stream alone notices only after the keepalive (at least 10 s in
// grpc-go). Any answer, an error status included, counts as alive.
func (s *session) runProbe(ctx context.Context, cc *grpc.ClientConn, cancel context.CancelCauseFunc) {
	t := time.NewTicker(s.c.cfg.ProbeInterval)
	defer t.Stop()
	failed := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, pcancel := context.WithTimeout(ctx, s.c.cfg.ProbeTimeout)
		err := cc.Invoke(pctx, replicasMethod, &emptypb.Empty{}, &structpb.Struct{})
		pcancel()
		if ctx.Err() != nil {
			return
		}
		if code := status.Code(err); code == codes.DeadlineExceeded || code == codes.Unavailable {
			failed++
		} else {
			failed = 0
		}
		if failed >= s.c.cfg.ProbeFailures {
			cancel(fmt.Errorf("%w: %s: %d probes in a row unanswered within %s", errSilent, s.addr, failed, s.c.cfg.ProbeTimeout))
			return
		}
	}
}

func (s *session) connected() {
	s.opened, s.start = true, time.Now()
	s.c.noteConnected(s.addr)
	s.c.log.Info("connected to a control plane replica", "server", s.addr, "delta", s.c.cfg.Delta)
}

func nackStatus(err error) *rpcstatus.Status {
	return &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
}

// --- state of the world ---

func (s *session) runSotW(ctx context.Context, cc *grpc.ClientConn) error {
	c := s.c
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("open ADS stream to %s: %w", s.addr, err)
	}
	s.connected()
	first := true
	send := func(req *discovery.DiscoveryRequest) error {
		if first { // the server keeps the node of the first request
			req.Node, first = c.node, false
		}
		if err := stream.Send(req); err != nil {
			return sendErr(s.addr, err, func() error { _, err := stream.Recv(); return err })
		}
		return nil
	}
	// Tell the replica what we have: it answers only what differs.
	snap := c.Snapshot()
	eds := edsNames(snap.Clusters)
	for _, typ := range []string{TypeListener, TypeCluster} {
		if err := send(&discovery.DiscoveryRequest{TypeUrl: typ, VersionInfo: snap.Versions[typ]}); err != nil {
			return err
		}
	}
	edsSubscribed := len(eds) > 0
	if edsSubscribed {
		if err := send(&discovery.DiscoveryRequest{TypeUrl: TypeEndpoint, VersionInfo: snap.Versions[TypeEndpoint], ResourceNames: eds}); err != nil {
			return err
		}
	}
	nonces := map[string]string{}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		s.got = true
		c.noteResponse()
		typ := resp.GetTypeUrl()
		if typ != TypeListener && typ != TypeCluster && typ != TypeEndpoint {
			c.log.Debug("ignoring a response of a type not subscribed", "type", typ)
			continue
		}
		nonces[typ] = resp.GetNonce()
		cur := c.Snapshot()
		next, err := s.applySotW(cur, resp, eds)
		if err != nil {
			c.log.Warn("config rejected (NACK)", "server", s.addr, "type", shortType(typ), "version", resp.GetVersionInfo(), "err", err)
			c.noteAck(err)
			req := &discovery.DiscoveryRequest{TypeUrl: typ, VersionInfo: cur.Versions[typ], ResponseNonce: resp.GetNonce(), ErrorDetail: nackStatus(err)}
			if typ == TypeEndpoint {
				req.ResourceNames = eds
			}
			if err := send(req); err != nil {
				return err
			}
			continue
		}
		if next != nil {
			c.publish(next)
		}
		ack := &discovery.DiscoveryRequest{TypeUrl: typ, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
		if typ == TypeEndpoint {
			ack.ResourceNames = eds
		}
		if err := send(ack); err != nil {
			return err
		}
		c.noteAck(nil)
		if typ != TypeCluster {
			continue
		}
		// The EDS clusters changed: ask for their load assignments (an ACK
		// carrying a stale nonce is ignored by the server; the next EDS ACK
		// carries the new names anyway).
		if newEDS := edsNames(c.Snapshot().Clusters); !slices.Equal(newEDS, eds) {
			eds = newEDS
			if len(eds) > 0 || edsSubscribed {
				edsSubscribed = true
				req := &discovery.DiscoveryRequest{TypeUrl: TypeEndpoint, VersionInfo: c.Snapshot().Versions[TypeEndpoint],
					ResponseNonce: nonces[TypeEndpoint], ResourceNames: eds}
				if err := send(req); err != nil {
					return err
				}
			}
		}
	}
}

// applySotW validates a response and returns the snapshot it makes, nil if
// nothing changed, or the reason to NACK it.
func (s *session) applySotW(cur *Snapshot, resp *discovery.DiscoveryResponse, eds []string) (*Snapshot, error) {
	typ := resp.GetTypeUrl()
	names, msgs, err := s.decodeAll(typ, resp.GetResources(), nil)
	if err != nil {
		return nil, err
	}
	if cur.Has(typ) && cur.Versions[typ] == resp.GetVersionInfo() {
		return nil, nil // the same version again: nothing new
	}
	next := cur.clone()
	next.Versions[typ] = resp.GetVersionInfo()
	next.ResourceVersions = nil
	next.Server, next.UpdatedAt = s.addr, time.Now()
	switch typ {
	case TypeListener:
		next.Listeners = toMap[*listenerv3.Listener](names, msgs, nil)
	case TypeCluster:
		next.Clusters = toMap[*clusterv3.Cluster](names, msgs, nil)
		next.Endpoints = keepOnly(cur.Endpoints, edsNames(next.Clusters))
	case TypeEndpoint:
		// As Envoy: a load assignment missing from an EDS response is kept
		// while its cluster exists.
		next.Endpoints = toMap(names, msgs, keepOnly(cur.Endpoints, eds))
	}
	return next, nil
}

// --- incremental ---

func (s *session) runDelta(ctx context.Context, cc *grpc.ClientConn) error {
	c := s.c
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("open delta ADS stream to %s: %w", s.addr, err)
	}
	s.connected()
	first := true
	send := func(req *discovery.DeltaDiscoveryRequest) error {
		if first {
			req.Node, first = c.node, false
		}
		if err := stream.Send(req); err != nil {
			return sendErr(s.addr, err, func() error { _, err := stream.Recv(); return err })
		}
		return nil
	}
	snap := c.Snapshot()
	eds := edsNames(snap.Clusters)
	for _, typ := range []string{TypeListener, TypeCluster} {
		if err := send(&discovery.DeltaDiscoveryRequest{TypeUrl: typ, InitialResourceVersions: initialVersions(snap, typ, nil)}); err != nil {
			return err
		}
	}
	if len(eds) > 0 {
		if err := send(&discovery.DeltaDiscoveryRequest{TypeUrl: TypeEndpoint, ResourceNamesSubscribe: eds,
			InitialResourceVersions: initialVersions(snap, TypeEndpoint, eds)}); err != nil {
			return err
		}
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		s.got = true
		c.noteResponse()
		typ := resp.GetTypeUrl()
		if typ != TypeListener && typ != TypeCluster && typ != TypeEndpoint {
			c.log.Debug("ignoring a response of a type not subscribed", "type", typ)
			continue
		}
		cur := c.Snapshot()
		next, err := s.applyDelta(cur, resp)
		if err != nil {
			c.log.Warn("config rejected (NACK)", "server", s.addr, "type", shortType(typ), "version", resp.GetSystemVersionInfo(), "err", err)
			c.noteAck(err)
			if err := send(&discovery.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce(), ErrorDetail: nackStatus(err)}); err != nil {
				return err
			}
			continue
		}
		if next != nil {
			c.publish(next)
		}
		if err := send(&discovery.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}); err != nil {
			return err
		}
		c.noteAck(nil)
		if typ != TypeCluster {
			continue
		}
		newEDS := edsNames(c.Snapshot().Clusters)
		sub, unsub := diff(eds, newEDS)
		eds = newEDS
		if len(sub) > 0 || len(unsub) > 0 {
			if err := send(&discovery.DeltaDiscoveryRequest{TypeUrl: TypeEndpoint, ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub}); err != nil {
				return err
			}
		}
	}
}

// initialVersions is what the client has of typ (only names, if given),
// for initial_resource_versions. A resource without a known version is
// listed with "", so that the server sends it again or says it is gone.
func initialVersions(snap *Snapshot, typ string, names []string) map[string]string {
	var have []string
	switch typ {
	case TypeListener:
		have = slices.Collect(maps.Keys(snap.Listeners))
	case TypeCluster:
		have = slices.Collect(maps.Keys(snap.Clusters))
	case TypeEndpoint:
		have = slices.Collect(maps.Keys(snap.Endpoints))
	}
	if len(have) == 0 {
		return nil
	}
	out := make(map[string]string, len(have))
	for _, n := range have {
		if names == nil || slices.Contains(names, n) {
			out[n] = snap.ResourceVersions[typ][n]
		}
	}
	return out
}

func (s *session) applyDelta(cur *Snapshot, resp *discovery.DeltaDiscoveryResponse) (*Snapshot, error) {
	typ := resp.GetTypeUrl()
	anys := make([]*anypb.Any, len(resp.GetResources()))
	declared := make([]string, len(resp.GetResources()))
	for i, r := range resp.GetResources() {
		if r.GetResource() == nil {
			return nil, fmt.Errorf("%s: resource %q has no body", shortType(typ), r.GetName())
		}
		anys[i], declared[i] = r.GetResource(), r.GetName()
	}
	names, msgs, err := s.decodeAll(typ, anys, declared)
	if err != nil {
		return nil, err
	}
	if cur.Has(typ) && len(names) == 0 && len(resp.GetRemovedResources()) == 0 {
		return nil, nil
	}
	next := cur.clone()
	next.Versions[typ] = resp.GetSystemVersionInfo()
	next.Server, next.UpdatedAt = s.addr, time.Now()
	if next.ResourceVersions == nil {
		next.ResourceVersions = map[string]map[string]string{}
	}
	rv := maps.Clone(cur.ResourceVersions[typ])
	if rv == nil {
		rv = map[string]string{}
	}
	for i, r := range resp.GetResources() {
		rv[names[i]] = r.GetVersion()
	}
	removed := resp.GetRemovedResources()
	for _, n := range removed {
		delete(rv, n)
	}
	switch typ {
	case TypeListener:
		next.Listeners = toMap(names, msgs, without(cur.Listeners, removed))
	case TypeCluster:
		next.Clusters = toMap(names, msgs, without(cur.Clusters, removed))
		keep := edsNames(next.Clusters)
		next.Endpoints = keepOnly(cur.Endpoints, keep)
		if erv := cur.ResourceVersions[TypeEndpoint]; erv != nil {
			next.ResourceVersions[TypeEndpoint] = keepOnly(erv, keep)
		}
	case TypeEndpoint:
		next.Endpoints = toMap(names, msgs, without(cur.Endpoints, removed))
	}
	next.ResourceVersions[typ] = rv
	return next, nil
}

// --- helpers ---

// decodeAll decodes and validates every resource of a response (names, if
// given, are the names the response declares for them) and runs the
// Reject hook. Any failure rejects the whole response, as Envoy does.
func (s *session) decodeAll(typ string, anys []*anypb.Any, declared []string) ([]string, []proto.Message, error) {
	names := make([]string, len(anys))
	msgs := make([]proto.Message, len(anys))
	seen := make(map[string]struct{}, len(anys))
	for i, a := range anys {
		name, m, err := decodeAny(typ, a, s.c.decode)
		if err != nil {
			return nil, nil, err
		}
		if declared != nil && declared[i] != name {
			return nil, nil, fmt.Errorf("%s: resource declared as %q is named %q", shortType(typ), declared[i], name)
		}
		if _, dup := seen[name]; dup {
			return nil, nil, fmt.Errorf("%s: duplicate resource %q", shortType(typ), name)
		}
		seen[name] = struct{}{}
		names[i], msgs[i] = name, m
	}
	if s.c.cfg.Reject != nil {
		if err := s.c.cfg.Reject(typ, msgs); err != nil {
			return nil, nil, fmt.Errorf("%s rejected: %w", shortType(typ), err)
		}
	}
	return names, msgs, nil
}

// toMap returns base (copied) with the decoded resources set.
func toMap[M proto.Message](names []string, msgs []proto.Message, base map[string]M) map[string]M {
	out := make(map[string]M, len(base)+len(names))
	maps.Copy(out, base)
	for i, n := range names {
		out[n] = msgs[i].(M)
	}
	return out
}

// keepOnly returns the entries of m whose names are in sorted names (m
// itself when nothing goes).
func keepOnly[V any](m map[string]V, names []string) map[string]V {
	drop := false
	for n := range m {
		if _, ok := slices.BinarySearch(names, n); !ok {
			drop = true
			break
		}
	}
	if !drop {
		return m
	}
	out := make(map[string]V, len(names))
	for n, v := range m {
		if _, ok := slices.BinarySearch(names, n); ok {
			out[n] = v
		}
	}
	return out
}

func without[V any](m map[string]V, removed []string) map[string]V {
	if len(removed) == 0 {
		return m
	}
	out := maps.Clone(m)
	for _, n := range removed {
		delete(out, n)
	}
	return out
}

// diff returns the names added to and removed from sorted old to get sorted new.
func diff(old, new []string) (added, removed []string) {
	for _, n := range new {
		if _, ok := slices.BinarySearch(old, n); !ok {
			added = append(added, n)
		}
	}
	for _, n := range old {
		if _, ok := slices.BinarySearch(new, n); !ok {
			removed = append(removed, n)
		}
	}
	return added, removed
}

// sendErr: a Send that fails with io.EOF hides why the stream ended; the
// stream's status comes from Recv (returned as it is, so that ShedHint can
// read it).
func sendErr(addr string, err error, recv func() error) error {
	if !errors.Is(err, io.EOF) {
		return fmt.Errorf("send to %s: %w", addr, err)
	}
	for {
		if err := recv(); err != nil {
			return err
		}
	}
}
