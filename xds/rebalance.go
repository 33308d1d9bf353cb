package xds

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	deltaserver "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	sotwserver "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Rebalancing. After a rolling restart the proxies sit on the replicas that
// stayed up. Every replica compares the proxies it holds with its fair share
// (proxies / healthy replicas) and, when it holds more than 10 % over it,
// closes a few streams a second with UNAVAILABLE and a message naming the
// least loaded replica ("reconnect to ..."); the proxy reconnects there.
// Streams are closed one by one, never all at once, so there is no storm.

// rebalanceStreak is how many consecutive checks must find a replica over
// its share before it sheds.
const rebalanceStreak = 3

// ShedPrefix starts the status message of a stream closed to rebalance or
// on shutdown; the address of the suggested replica follows it.
const ShedPrefix = "kuma-cp: reconnect to another replica: "

// ShedHint returns the suggested xDS address in an error from a stream the
// control plane closed (ShedPrefix), or "".
func ShedHint(err error) string {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.Unavailable {
		return ""
	}
	if rest, ok := strings.CutPrefix(st.Message(), ShedPrefix); ok {
		return strings.TrimSpace(rest)
	}
	return ""
}

// trackedStream is one ADS stream. It can be ended from outside (shed):
// each stream is served by a go-control-plane server of its own whose
// context shed cancels, so the stream needs no goroutine besides the two
// go-control-plane runs (the handler and its receiver).
type trackedStream struct {
	grpc.ServerStream

	cancel  context.CancelFunc // ends the stream's go-control-plane server
	shedMu  sync.Mutex
	hint    string
	shedded bool

	mu      sync.Mutex
	node    resource.Key
	hasNode bool
	since   time.Time
}

func (t *trackedStream) shed(hint string) {
	t.shedMu.Lock()
	defer t.shedMu.Unlock()
	if t.shedded {
		return
	}
	t.shedded, t.hint = true, hint
	t.cancel()
}

func (t *trackedStream) RecvMsg(m any) error {
	err := t.ServerStream.RecvMsg(m)
	if err == nil {
		t.noteNode(m)
	}
	return err
}

func (t *trackedStream) noteNode(msg any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.hasNode {
		return
	}
	var id string
	switch r := msg.(type) {
	case *discovery.DiscoveryRequest:
		id = r.GetNode().GetId()
	case *discovery.DeltaDiscoveryRequest:
		id = r.GetNode().GetId()
	}
	if k, err := ParseNodeID(id); err == nil {
		t.node, t.hasNode, t.since = k, true, time.Now()
	}
}

// adsService is the ADS gRPC service: every stream gets its own
// go-control-plane server (a small struct) so that it can be ended alone.
type adsService struct{ s *Server }

func (a adsService) StreamAggregatedResources(st grpc.BidiStreamingServer[discovery.DiscoveryRequest, discovery.DiscoveryResponse]) error {
	return a.s.serveADS(st, false)
}

func (a adsService) DeltaAggregatedResources(st grpc.BidiStreamingServer[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]) error {
	return a.s.serveADS(st, true)
}

var _ discovery.AggregatedDiscoveryServiceServer = adsService{}

// serveADS serves one ADS stream until the proxy leaves, the server stops,
// or the stream is shed (then the proxy is told where to reconnect).
func (s *Server) serveADS(ss grpc.ServerStream, delta bool) error {
	ctx, cancel := context.WithCancel(s.life)
	defer cancel()
	ts := &trackedStream{ServerStream: ss, cancel: cancel}
	s.mu.Lock()
	s.mu.tracked[ts] = struct{}{}
	s.mu.Unlock()
	cb := &streamCallbacks{s: s, key: streamKey{delta: delta, id: s.streamIDs.Add(1)}}
	var err error
	if delta {
		str := &grpc.GenericServerStream[discovery.DeltaDiscoveryRequest, discovery.DeltaDiscoveryResponse]{ServerStream: ts}
		err = deltaserver.NewServer(ctx, s.cache, cb).DeltaStreamHandler(str, resourcev3.AnyType)
	} else {
		// Ordered ADS: responses leave in the order they were produced
		// (clusters before the listeners that use them), without reflect.Select.
		str := &grpc.GenericServerStream[discovery.DiscoveryRequest, discovery.DiscoveryResponse]{ServerStream: ts}
		err = sotwserver.NewServer(ctx, s.cache, cb, sotwserver.WithOrderedADS()).StreamHandler(str, resourcev3.AnyType)
	}
	s.mu.Lock()
	delete(s.mu.tracked, ts)
	s.mu.Unlock()
	ts.shedMu.Lock()
	shedded, hint := ts.shedded, ts.hint
	ts.shedMu.Unlock()
	if shedded {
		return status.Error(codes.Unavailable, ShedPrefix+hint)
	}
	return err
}

// runRebalancer sheds streams while this replica holds more than its share.
func (s *Server) runRebalancer(ctx context.Context) {
	if s.opts.RebalanceRate < 0 {
		return
	}
	t := time.NewTicker(s.opts.RebalanceInterval)
	defer t.Stop()
	budget := 0.0
	streak := 0 // consecutive checks that found this replica over its share
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		budget = min(budget+s.opts.RebalanceRate*s.opts.RebalanceInterval.Seconds(), math.Max(1, s.opts.RebalanceRate))
		n, hint := s.excess()
		// Other replicas' counts come from insights, which lag behind a
		// burst of connects: shed only an imbalance that lasts.
		if n == 0 {
			streak = 0
			continue
		}
		if streak++; streak < rebalanceStreak {
			continue
		}
		for n > 0 && budget >= 1 {
			if !s.shedOne(hint) {
				break
			}
			n--
			budget--
		}
	}
}

// excess returns how many streams this replica should close now, and the
// xDS address of the least loaded other replica. A replica sheds when it
// holds more than 10 % over its fair share, or more than its share while
// another replica holds less than 90 % of it (a replica that just came back),
// and only down to its share, so that every replica ends within 10 %.
// A replica that is not Ready (no leader: the cluster lost its quorum)
// sheds nothing: the counts cannot be trusted and the other replicas are
// likely down, so it keeps every proxy it serves.
func (s *Server) excess() (int, string) {
	if ok, _ := s.opts.Cluster.Ready(); !ok {
		return 0, ""
	}
	counts, alive := s.loads()
	n := planShed(counts, alive, s.opts.Cluster.Name())
	if n == 0 {
		return 0, ""
	}
	return n, s.leastLoadedOther()
}

// planShed is excess's arithmetic: counts per replica, the alive replicas,
// and this replica's name.
func planShed(counts map[string]int, alive []string, me string) int {
	if len(alive) < 2 {
		return 0
	}
	total, minOther := 0, math.MaxInt
	for _, name := range alive {
		total += counts[name]
		if name != me {
			minOther = min(minOther, counts[name])
		}
	}
	fair := float64(total) / float64(len(alive))
	share := int(math.Ceil(fair))
	mine := counts[me]
	over := float64(mine) > fair*1.1
	starved := float64(minOther) < fair*0.9
	if mine <= share || (!over && !starved) {
		return 0
	}
	return mine - share
}

// loads returns proxy counts per replica (this one from its own streams,
// the others from the replicated insights) and the alive replicas that serve xDS.
func (s *Server) loads() (map[string]int, []string) {
	counts := ProxyCounts(s.opts.State)
	counts[s.opts.Cluster.Name()] = s.cache.Proxies()
	var alive []string
	for _, m := range s.opts.Cluster.Members() {
		if m.Alive && m.XDSAddr != "" {
			alive = append(alive, m.Name)
		}
	}
	return counts, alive
}

// leastLoadedOther returns the xDS address of the alive replica other than
// this one with the fewest proxies ("" if there is none).
func (s *Server) leastLoadedOther() string {
	counts := ProxyCounts(s.opts.State)
	best, bestN := "", math.MaxInt
	for _, m := range s.opts.Cluster.Members() {
		if !m.Alive || m.XDSAddr == "" || m.Name == s.opts.Cluster.Name() {
			continue
		}
		if n := counts[m.Name]; n < bestN {
			best, bestN = m.XDSAddr, n
		}
	}
	return best
}

// shedOne closes the newest stream that has identified its proxy.
func (s *Server) shedOne(hint string) bool {
	type cand struct {
		ts    *trackedStream
		since time.Time
	}
	s.mu.Lock()
	var cands []cand
	for ts := range s.mu.tracked {
		ts.mu.Lock()
		ok, since := ts.hasNode, ts.since
		ts.mu.Unlock()
		ts.shedMu.Lock()
		ok = ok && !ts.shedded
		ts.shedMu.Unlock()
		if ok {
			cands = append(cands, cand{ts, since})
		}
	}
	s.mu.Unlock()
	if len(cands) == 0 {
		return false
	}
	slices.SortFunc(cands, func(a, b cand) int { return b.since.Compare(a.since) })
	ts := cands[0].ts
	ts.shed(hint)
	s.m.shed.Inc()
	s.log.Info("shed a proxy stream to rebalance", "dataplane", ts.node.String(), "to", hint)
	return true
}
