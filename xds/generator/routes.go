package generator

import (
	"cmp"
	"math"
	"slices"

	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// matchAll is the selector value that matches any value of a present tag.
const matchAll = "*"

// selectorMatches is Kuma's TagSelector.Matches: every selector tag must be
// present in tags with the same value, or the value "*". An empty selector
// matches everything.
func selectorMatches(sel, tags map[string]string) bool {
	for k, v := range sel {
		tv, ok := tags[k]
		if !ok || (v != tv && v != matchAll) {
			return false
		}
	}
	return true
}

// rank is Kuma's TagSelectorRank: how specific a selector is.
type rank struct{ exact, wildcard int }

func selectorRank(sel map[string]string) rank {
	var r rank
	for _, v := range sel {
		if v == matchAll {
			r.wildcard++
		} else {
			r.exact++
		}
	}
	return r
}

func (r rank) plus(o rank) rank { return rank{r.exact + o.exact, r.wildcard + o.wildcard} }

// compare orders by the number of tags, then by the number of exact ones.
func (r rank) compare(o rank) int {
	if c := cmp.Compare(r.exact+r.wildcard, o.exact+o.wildcard); c != 0 {
		return c
	}
	return cmp.Compare(r.exact, o.exact)
}

// routeCandidate is a TrafficRoute with a source selector matching the proxy.
type routeCandidate struct {
	res    *resource.Resource
	spec   *resource.TrafficRouteSpec
	source rank // rank of its most specific matching source selector
}

// routeCandidates keeps the routes that can route (a split or a destination)
// and have a source selector matching the proxy, in name order (Kuma's
// iteration order, which decides the last ties).
func routeCandidates(routes []*resource.Resource, dp *resource.DataplaneSpec) []routeCandidate {
	var out []routeCandidate
	for _, r := range routes {
		spec := r.Spec.(*resource.TrafficRouteSpec) // checked by checkInput
		if c := spec.Conf; c == nil || (len(c.Split) == 0 && c.Destination == nil) {
			continue // cannot route anything; validation rejects it
		}
		best, ok := rank{}, false
		for _, src := range spec.Sources {
			if !dataplaneMatches(dp, src.Match) {
				continue
			}
			if rk := selectorRank(src.Match); !ok || rk.compare(best) > 0 {
				best = rk
			}
			ok = true
		}
		if ok {
			out = append(out, routeCandidate{res: r, spec: spec, source: best})
		}
	}
	if !slices.IsSortedFunc(out, byRouteName) {
		slices.SortStableFunc(out, byRouteName)
	}
	return out
}

func byRouteName(a, b routeCandidate) int { return cmp.Compare(a.res.Name, b.res.Name) }

// dataplaneMatches is Kuma's Dataplane.Matches: a selector matches a proxy if
// it matches the tags of one of its inbounds or of its gateway.
func dataplaneMatches(dp *resource.DataplaneSpec, sel map[string]string) bool {
	if len(sel) == 0 {
		return true
	}
	for i := range dp.Networking.Inbound {
		if selectorMatches(sel, dp.Networking.Inbound[i].Tags) {
			return true
		}
	}
	gw := dp.Networking.Gateway
	return gw != nil && selectorMatches(sel, gw.Tags)
}

// selectRoute picks the TrafficRoute for traffic to service (Kuma's
// SelectConnectionPolicies): the highest source+destination rank wins; on a
// tie the route created later, then the first by name. nil when none matches.
func selectRoute(cands []routeCandidate, service string) *resource.TrafficRouteSpec {
	outTags := map[string]string{resource.ServiceTag: service}
	var best *routeCandidate
	var bestRank rank
	for i := range cands {
		c := &cands[i]
		for _, dst := range c.spec.Destinations {
			if !selectorMatches(dst.Match, outTags) {
				continue
			}
			rk := selectorRank(dst.Match).plus(c.source)
			if best == nil || rk.compare(bestRank) > 0 ||
				(rk.compare(bestRank) == 0 && c.res.CreationTime.After(best.res.CreationTime)) {
				best, bestRank = c, rk
			}
		}
	}
	if best == nil {
		return nil
	}
	return best.spec
}

// destination is one cluster an outbound sends traffic to.
type destination struct {
	ref    EndpointRef
	weight uint32
}

// splitDestinations turns the route's split (or destination) into weighted
// destinations for an outbound with tags outTags. Zero weights are dropped
// (Envoy has none); entries naming the same cluster are summed; an entry
// without a service or with tags that are not UTF-8 is dropped.
func splitDestinations(route *resource.TrafficRouteSpec, outTags map[string]string) []destination {
	split := route.Conf.Split
	if len(split) == 0 {
		one := uint32(1)
		split = []resource.TrafficRouteSplit{{Weight: &one, Destination: route.Conf.Destination}}
	}
	out := make([]destination, 0, len(split))
	for _, s := range split {
		if s.Weight == nil || *s.Weight == 0 {
			continue
		}
		tags := resolveWildcards(s.Destination, outTags)
		svc := tags[resource.ServiceTag]
		if svc == "" || !validTags(tags) {
			continue
		}
		ref := endpointRef(svc, tags)
		if i := slices.IndexFunc(out, func(d destination) bool { return d.ref.Cluster == ref.Cluster }); i >= 0 {
			out[i].weight = uint32(min(uint64(out[i].weight)+uint64(*s.Weight), math.MaxUint32))
			continue
		}
		out = append(out, destination{ref: ref, weight: *s.Weight})
	}
	return out
}

// resolveWildcards is Kuma's handleWildcardTagsFor: a destination tag with
// value "*" is dropped, then every outbound tag the destination does not set
// is added (so {kuma.io/service: "*"} becomes the outbound's service).
func resolveWildcards(dest, outTags map[string]string) map[string]string {
	tags := make(map[string]string, len(dest)+len(outTags))
	for k, v := range dest {
		if v != matchAll {
			tags[k] = v
		}
	}
	for k, v := range outTags {
		if _, ok := tags[k]; !ok {
			tags[k] = v
		}
	}
	return tags
}

// endpointRef names the cluster of the endpoints of svc carrying tags.
func endpointRef(svc string, tags map[string]string) EndpointRef {
	var extra map[string]string
	for k, v := range tags {
		if k == resource.ServiceTag {
			continue
		}
		if extra == nil {
			extra = make(map[string]string, len(tags))
		}
		extra[k] = v
	}
	if extra == nil {
		return EndpointRef{Cluster: svc, Service: svc}
	}
	return EndpointRef{Cluster: SubsetClusterName(svc, extra), Service: svc, Tags: extra}
}
