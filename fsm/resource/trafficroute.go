package resource

// TypeTrafficRoute is Kuma's old-style routing policy (sources/destinations/conf).
const TypeTrafficRoute Type = "TrafficRoute"

func init() {
	register(&Descriptor{Type: TypeTrafficRoute, Plural: "traffic-routes", Scope: ScopeMesh, NewSpec: func() Spec { return &TrafficRouteSpec{} }})
}

type TrafficRouteSpec struct {
	Sources      []Selector        `json:"sources,omitempty"`
	Destinations []Selector        `json:"destinations,omitempty"`
	Conf         *TrafficRouteConf `json:"conf,omitempty"`
}

type TrafficRouteConf struct {
	Split        []TrafficRouteSplit `json:"split,omitempty"`
	Destination  map[string]string   `json:"destination,omitempty"`
	LoadBalancer *LoadBalancer       `json:"loadBalancer,omitempty"`
	HTTP         []TrafficRouteHTTP  `json:"http,omitempty"`
}

type TrafficRouteSplit struct {
	Weight      *uint32           `json:"weight,omitempty"`
	Destination map[string]string `json:"destination,omitempty"`
}

// LoadBalancer is a oneof: exactly one field may be set.
type LoadBalancer struct {
	RoundRobin   *struct{}       `json:"roundRobin,omitempty"`
	LeastRequest *LeastRequestLB `json:"leastRequest,omitempty"`
	RingHash     *RingHashLB     `json:"ringHash,omitempty"`
	Random       *struct{}       `json:"random,omitempty"`
	Maglev       *struct{}       `json:"maglev,omitempty"`
}

type LeastRequestLB struct {
	ChoiceCount uint32 `json:"choiceCount,omitempty"`
}

type RingHashLB struct {
	HashFunction string `json:"hashFunction,omitempty"`
	MinRingSize  uint64 `json:"minRingSize,omitempty"`
	MaxRingSize  uint64 `json:"maxRingSize,omitempty"`
}

type TrafficRouteHTTP struct {
	Match       *HTTPMatch          `json:"match,omitempty"`
	Modify      *HTTPModify         `json:"modify,omitempty"`
	Split       []TrafficRouteSplit `json:"split,omitempty"`
	Destination map[string]string   `json:"destination,omitempty"`
}

type HTTPMatch struct {
	Method  *StringMatcher            `json:"method,omitempty"`
	Path    *StringMatcher            `json:"path,omitempty"`
	Headers map[string]*StringMatcher `json:"headers,omitempty"`
}

// StringMatcher is a oneof of exact, prefix and regex.
type StringMatcher struct {
	Exact  *string `json:"exact,omitempty"`
	Prefix *string `json:"prefix,omitempty"`
	Regex  *string `json:"regex,omitempty"`
}

type HTTPModify struct {
	Path            *ModifyPath    `json:"path,omitempty"`
	Host            *ModifyHost    `json:"host,omitempty"`
	RequestHeaders  *ModifyHeaders `json:"requestHeaders,omitempty"`
	ResponseHeaders *ModifyHeaders `json:"responseHeaders,omitempty"`
}

type RegexSubstitution struct {
	Pattern      string `json:"pattern,omitempty"`
	Substitution string `json:"substitution,omitempty"`
}

type ModifyPath struct {
	RewritePrefix *string            `json:"rewritePrefix,omitempty"`
	Regex         *RegexSubstitution `json:"regex,omitempty"`
}

type ModifyHost struct {
	Value    *string            `json:"value,omitempty"`
	FromPath *RegexSubstitution `json:"fromPath,omitempty"`
}

type ModifyHeaders struct {
	Add    []HeaderAdd    `json:"add,omitempty"`
	Remove []HeaderRemove `json:"remove,omitempty"`
}

type HeaderAdd struct {
	Name   string `json:"name,omitempty"`
	Value  string `json:"value,omitempty"`
	Append bool   `json:"append,omitempty"`
}

type HeaderRemove struct {
	Name string `json:"name,omitempty"`
}

func (s *TrafficRouteSpec) Default() {}

func (s *TrafficRouteSpec) Validate() ValidationErrors {
	var v ValidationErrors
	validateSelectors(&v, "sources", s.Sources, tagOpts{selector: true, requireOne: true, requireService: true})
	validateSelectors(&v, "destinations", s.Destinations, tagOpts{selector: true, requireService: true, onlyServiceTag: true})
	c := s.Conf
	if c == nil {
		v.Add("conf", "cannot be empty")
		return v
	}
	validateSplitAndDestination(&v, "conf", c.Split, c.Destination)
	for i := range c.HTTP {
		h := &c.HTTP[i]
		p := idxPath("conf.http", i)
		validateHTTPMatch(&v, p+".match", h.Match)
		if h.Modify != nil {
			validateHTTPModify(&v, p+".modify", h.Modify, h.Match)
		}
		validateSplitAndDestination(&v, p, h.Split, h.Destination)
	}
	if lb := c.LoadBalancer; lb != nil {
		set := 0
		for _, b := range []bool{lb.RoundRobin != nil, lb.LeastRequest != nil, lb.RingHash != nil, lb.Random != nil, lb.Maglev != nil} {
			if b {
				set++
			}
		}
		if set > 1 {
			v.Add("conf.loadBalancer", "only one of roundRobin, leastRequest, ringHash, random, maglev can be set")
		}
		if lr := lb.LeastRequest; lr != nil && lr.ChoiceCount == 1 {
			v.Add("conf.loadBalancer.leastRequest.choiceCount", "value must be greater than or equal to 2")
		}
		if rh := lb.RingHash; rh != nil {
			if rh.HashFunction != "XX_HASH" && rh.HashFunction != "MURMUR_HASH_2" {
				v.Add("conf.loadBalancer.ringHash.hashFunction", "must have a valid hash function")
			}
			if rh.MaxRingSize != 0 && rh.MinRingSize > rh.MaxRingSize {
				v.Add("conf.loadBalancer.ringHash.minRingSize", "must not be greater than maxRingSize")
			}
		}
	}
	return v
}

func validateSplitAndDestination(v *ValidationErrors, p string, split []TrafficRouteSplit, dest map[string]string) {
	if split == nil && dest == nil {
		v.Add(p, `requires either "destination" or "split"`)
	}
	if split != nil && dest != nil {
		v.Add(p, `"split" cannot be defined at the same time as "destination"`)
	}
	if dest != nil {
		validateTagMap(v, p+".destination", dest, tagOpts{selector: true, requireOne: true, requireService: true})
	}
	if split == nil {
		return
	}
	var total uint64
	for i, e := range split {
		sp := idxPath(p+".split", i)
		if e.Weight == nil {
			v.Add(sp+".weight", "needs to be defined")
		} else {
			total += uint64(*e.Weight)
		}
		validateTagMap(v, sp+".destination", e.Destination, tagOpts{selector: true, requireOne: true, requireService: true})
	}
	if total == 0 {
		v.Add(p+".split", "there must be at least one split entry with weight above 0")
	}
}

func validateHTTPMatch(v *ValidationErrors, p string, m *HTTPMatch) {
	if m == nil || (m.Method == nil && m.Path == nil && m.Headers == nil) {
		v.Add(p, `must be present and contain at least one of the elements: "method", "path" or "headers"`)
		return
	}
	if m.Method != nil {
		validateStringMatcher(v, p+".method", m.Method)
	}
	if m.Path != nil {
		validateStringMatcher(v, p+".path", m.Path)
	}
	for _, k := range sortedKeys(m.Headers) {
		hp := keyPath(p+".headers", k)
		if k == "" {
			v.Add(hp, "cannot be empty")
		}
		validateStringMatcher(v, hp, m.Headers[k])
	}
}

func validateStringMatcher(v *ValidationErrors, p string, m *StringMatcher) {
	set := 0
	if m != nil {
		for _, s := range []*string{m.Exact, m.Prefix, m.Regex} {
			if s != nil {
				set++
			}
		}
	}
	switch {
	case set == 0:
		v.Add(p, `cannot be empty. Available options: "exact", "prefix" or "regex"`)
	case set > 1:
		v.Add(p, `only one of "exact", "prefix" or "regex" can be set`)
	case m.Prefix != nil && *m.Prefix == "":
		v.Add(p+".prefix", "cannot be empty")
	case m.Regex != nil && *m.Regex == "":
		v.Add(p+".regex", "cannot be empty")
	}
}

func validateHTTPModify(v *ValidationErrors, p string, m *HTTPModify, match *HTTPMatch) {
	if path := m.Path; path != nil {
		pp := p + ".path"
		switch {
		case path.RewritePrefix != nil && path.Regex != nil:
			v.Add(pp, `only one of "rewritePrefix" or "regex" can be set`)
		case path.RewritePrefix != nil:
			if *path.RewritePrefix == "" {
				v.Add(pp+".rewritePrefix", "cannot be empty")
			} else if match == nil || match.Path == nil || match.Path.Prefix == nil || *match.Path.Prefix == "" {
				v.Add(pp+".rewritePrefix", "can only be set when .http.match.path.prefix is not empty")
			}
		case path.Regex != nil:
			validateRegexSubstitution(v, pp+".regex", path.Regex)
		default:
			v.Add(pp, `either "rewritePrefix" or "regex" has to be set`)
		}
	}
	if host := m.Host; host != nil {
		hp := p + ".host"
		switch {
		case host.Value != nil && host.FromPath != nil:
			v.Add(hp, `only one of "value" or "fromPath" can be set`)
		case host.Value != nil:
			if *host.Value == "" {
				v.Add(hp+".value", "cannot be empty")
			}
		case host.FromPath != nil:
			validateRegexSubstitution(v, hp+".fromPath", host.FromPath)
		default:
			v.Add(hp, `either "value" or "fromPath" has to be set`)
		}
	}
	validateModifyHeaders(v, p+".requestHeaders", m.RequestHeaders)
	validateModifyHeaders(v, p+".responseHeaders", m.ResponseHeaders)
}

func validateRegexSubstitution(v *ValidationErrors, p string, r *RegexSubstitution) {
	if r.Pattern == "" {
		v.Add(p+".pattern", "cannot be empty")
	}
	if r.Substitution == "" {
		v.Add(p+".substitution", "cannot be empty")
	}
}

func validateModifyHeaders(v *ValidationErrors, p string, h *ModifyHeaders) {
	if h == nil {
		return
	}
	for i, a := range h.Add {
		ap := idxPath(p+".add", i)
		validateHeaderName(v, ap+".name", a.Name)
		if a.Value == "" {
			v.Add(ap+".value", "cannot be empty")
		}
	}
	for i, r := range h.Remove {
		validateHeaderName(v, idxPath(p+".remove", i)+".name", r.Name)
	}
}

func validateHeaderName(v *ValidationErrors, p, name string) {
	if name == "" {
		v.Add(p, "cannot be empty")
		return
	}
	if name[0] == ':' || name == "host" || name == "Host" {
		v.Add(p, "host header and HTTP/2 pseudo-headers are not allowed to be modified")
	}
}
