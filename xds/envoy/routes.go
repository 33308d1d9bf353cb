package envoy

import (
	"cmp"
	"math"
	"slices"
	"unicode/utf8"

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

// matchesService is selectorMatches(sel, {kuma.io/service: service}).
func matchesService(sel map[string]string, service string) bool {
	for k, v := range sel {
		if k != resource.ServiceTag || (v != service && v != matchAll) {
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
	var best *routeCandidate
	var bestRank rank
	for i := range cands {
		c := &cands[i]
		for _, dst := range c.spec.Destinations {
			if !matchesService(dst.Match, service) {
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

// splitDestinations appends to out the route's split (or destination) as
// weighted destinations for an outbound with tags outTags. Zero weights are dropped
// (Envoy has none); entries naming the same cluster are summed; an entry
// without a service or with tags that are not UTF-8 is dropped.
func splitDestinations(out []destination, route *resource.TrafficRouteSpec, outTags map[string]string) []destination {
	if len(route.Conf.Split) == 0 {
		return addDestination(out, 1, route.Conf.Destination, outTags)
	}
	for _, s := range route.Conf.Split {
		if s.Weight != nil {
			out = addDestination(out, *s.Weight, s.Destination, outTags)
		}
	}
	return out
}

func addDestination(out []destination, weight uint32, dest, outTags map[string]string) []destination {
	if weight == 0 {
		return out
	}
	var ref EndpointRef
	if svc, plain := plainDestination(dest, outTags); plain {
		ref = EndpointRef{Cluster: svc, Service: svc}
	} else {
		tags := resolveWildcards(dest, outTags)
		ref = endpointRef(tags[resource.ServiceTag], tags)
	}
	if ref.Service == "" || !utf8.ValidString(ref.Service) || !validTags(ref.Tags) {
		return out
	}
	if i := slices.IndexFunc(out, func(d destination) bool { return d.ref.Cluster == ref.Cluster }); i >= 0 {
		out[i].weight = uint32(min(uint64(out[i].weight)+uint64(weight), math.MaxUint32))
		return out
	}
	return append(out, destination{ref: ref, weight: weight})
}

// plainDestination reports whether dest, once its wildcards are resolved
// against outTags, names a service and nothing else, and which service: the
// common case, which needs no map.
func plainDestination(dest, outTags map[string]string) (string, bool) {
	svc := dest[resource.ServiceTag]
	if svc == matchAll || svc == "" && !hasKey(dest, resource.ServiceTag) {
		svc = outTags[resource.ServiceTag]
	}
	for k, v := range dest {
		if k != resource.ServiceTag && v != matchAll {
			return "", false
		}
	}
	for k := range outTags {
		if k != resource.ServiceTag {
			return "", false
		}
	}
	return svc, true
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

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
