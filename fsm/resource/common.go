package resource

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Well-known tags.
const (
	ServiceTag  = "kuma.io/service"
	ProtocolTag = "kuma.io/protocol"
	ZoneTag     = "kuma.io/zone"
)

// Protocols Kuma accepts in the kuma.io/protocol tag, sorted.
var Protocols = []string{"grpc", "http", "http2", "kafka", "tcp", "tls"}

var (
	tagNameCharset  = regexp.MustCompile(`^[a-zA-Z0-9.\-_:/]*$`)
	tagValueCharset = regexp.MustCompile(`^[a-zA-Z0-9.\-_:]*$`)
	selectorCharset = regexp.MustCompile(`^([a-zA-Z0-9.\-_:/]*|\*)$`)
	refNameCharset  = regexp.MustCompile(`^[0-9a-z.\-_]*$`)
	domainRegexp    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

func keyPath(path, key string) string   { return path + "[" + strconv.Quote(key) + "]" }
func idxPath(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

func allowedValuesHint(values ...string) string {
	return "Allowed values: " + strings.Join(values, ", ")
}

// tagOpts tune validateTagMap like Kuma's ValidateTagsOpts.
type tagOpts struct {
	selector        bool // values may be "*" and contain '/'
	requireOne      bool
	requireService  bool
	onlyServiceTag  bool
	checkProtocol   bool
	serviceTagLabel string // violation text when the service tag is missing; default Kuma's selector message
}

// validateTagMap checks tag names and values in sorted order.
func validateTagMap(v *ValidationErrors, path string, tags map[string]string, o tagOpts) {
	if o.requireOne && len(tags) == 0 {
		v.Add(path, "must have at least one tag")
	}
	if o.onlyServiceTag {
		if _, ok := tags[ServiceTag]; len(tags) != 1 || !ok {
			v.Add(path, "must consist of exactly one tag %q", ServiceTag)
		}
	}
	for _, k := range sortedKeys(tags) {
		val := tags[k]
		if k == "" {
			v.Add(path, "tag name must be non-empty")
		}
		if !tagNameCharset.MatchString(k) {
			v.Add(keyPath(path, k), "tag name must consist of alphanumeric characters, dots, dashes, slashes and underscores")
		}
		if o.onlyServiceTag && k != ServiceTag {
			v.Add(keyPath(path, k), "tag %q is not allowed", k)
		}
		if val == "" {
			v.Add(keyPath(path, k), "tag value must be non-empty")
		} else if o.selector {
			if !selectorCharset.MatchString(val) {
				v.Add(keyPath(path, k), `tag value must consist of alphanumeric characters, dots, dashes, slashes and underscores or be "*"`)
			}
		} else if !tagValueCharset.MatchString(val) {
			v.Add(keyPath(path, k), "tag value must consist of alphanumeric characters, dots, dashes and underscores")
		}
		if o.checkProtocol && k == ProtocolTag && val != "" && !slices.Contains(Protocols, val) {
			v.Add(keyPath(path, k), "tag %q has an invalid value %q. %s", ProtocolTag, val, allowedValuesHint(Protocols...))
		}
	}
	if _, ok := tags[ServiceTag]; o.requireService && !ok {
		if o.serviceTagLabel != "" {
			v.Add(keyPath(path, ServiceTag), "%s", o.serviceTagLabel)
		} else {
			v.Add(path, "mandatory tag %q is missing", ServiceTag)
		}
	}
}

// Selector matches proxies by tags (old-style policies' sources/destinations).
type Selector struct {
	Match map[string]string `json:"match,omitempty"`
}

func validateSelectors(v *ValidationErrors, path string, sels []Selector, o tagOpts) {
	if len(sels) == 0 {
		v.Add(path, "must have at least one element")
	}
	for i, s := range sels {
		validateTagMap(v, idxPath(path, i)+".match", s.Match, o)
	}
}

// validPort reports whether p is a usable TCP/UDP port.
func validPort(p uint32) bool { return p >= 1 && p <= 65535 }

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil && !strings.Contains(s, "%") // no zones: Envoy addresses have none
}

func isHostname(s string) bool { return len(s) <= 253 && domainRegexp.MatchString(s) }

// TargetRef selects what a new-style policy applies to.
type TargetRef struct {
	Kind        string            `json:"kind"`
	Name        string            `json:"name,omitempty"`
	Namespace   string            `json:"namespace,omitempty"`
	Mesh        string            `json:"mesh,omitempty"`
	SectionName string            `json:"sectionName,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	ProxyTypes  []string          `json:"proxyTypes,omitempty"`
}

// TargetRef kinds.
const (
	KindMesh                 = "Mesh"
	KindMeshSubset           = "MeshSubset"
	KindMeshService          = "MeshService"
	KindMeshServiceSubset    = "MeshServiceSubset"
	KindMeshGateway          = "MeshGateway"
	KindMeshHTTPRoute        = "MeshHTTPRoute"
	KindDataplane            = "Dataplane"
	KindMeshExternalService  = "MeshExternalService"
	KindMeshMultiZoneService = "MeshMultiZoneService"
)

// validateTargetRef follows Kuma's ValidateTargetRef: the kind must be one of
// kinds, and which of name/tags/labels may be set depends on the kind.
func validateTargetRef(v *ValidationErrors, path string, ref TargetRef, kinds ...string) {
	f := func(name string) string { return path + "." + name }
	if ref.Kind == "" {
		v.Add(f("kind"), "must be defined")
		return
	}
	if !slices.Contains(kinds, ref.Kind) {
		v.Add(f("kind"), "value is not supported. %s", allowedValuesHint(kinds...))
		return
	}
	notSet := func(name string, set bool) {
		if set {
			v.Add(f(name), "must not be set with kind %s", ref.Kind)
		}
	}
	name := func() {
		if ref.Name != "" && !refNameCharset.MatchString(ref.Name) {
			v.Add(f("name"), "invalid characters: must consist of lower case alphanumeric characters, '-', '.' and '_'.")
		}
	}
	for _, pt := range ref.ProxyTypes {
		if pt != "Sidecar" && pt != "Gateway" {
			v.Add(f("proxyTypes"), "value %q is not supported. %s", pt, allowedValuesHint("Sidecar", "Gateway"))
		}
	}
	switch ref.Kind {
	case KindMesh:
		if ref.Name != "" {
			v.Add(f("name"), "using name with kind %s is not yet supported", ref.Kind)
		}
		notSet("mesh", ref.Mesh != "")
		notSet("tags", len(ref.Tags) > 0)
		notSet("labels", len(ref.Labels) > 0)
		notSet("namespace", ref.Namespace != "")
		notSet("sectionName", ref.SectionName != "")
	case KindMeshSubset:
		notSet("name", ref.Name != "")
		notSet("mesh", ref.Mesh != "")
		validateTagMap(v, f("tags"), ref.Tags, tagOpts{})
		notSet("labels", len(ref.Labels) > 0)
		notSet("namespace", ref.Namespace != "")
		notSet("sectionName", ref.SectionName != "")
	case KindDataplane:
		notSet("tags", len(ref.Tags) > 0)
		notSet("mesh", ref.Mesh != "")
		notSet("proxyTypes", len(ref.ProxyTypes) > 0)
		name()
		if len(ref.Labels) > 0 && (ref.Name != "" || ref.Namespace != "") {
			v.Add(f("labels"), "either labels or name and namespace must be specified")
		}
	case KindMeshService, KindMeshHTTPRoute, KindMeshExternalService, KindMeshMultiZoneService:
		name()
		notSet("mesh", ref.Mesh != "")
		notSet("tags", len(ref.Tags) > 0)
		notSet("proxyTypes", len(ref.ProxyTypes) > 0)
		if len(ref.Labels) == 0 && ref.Name == "" {
			v.Add(f("name"), "must be set with kind %s", ref.Kind)
		}
		if len(ref.Labels) > 0 && (ref.Name != "" || ref.Namespace != "") {
			v.Add(f("labels"), "either labels or name and namespace must be specified")
		}
	case KindMeshServiceSubset, KindMeshGateway:
		if ref.Name == "" {
			v.Add(f("name"), "must be set with kind %s", ref.Kind)
		}
		name()
		notSet("mesh", ref.Mesh != "")
		notSet("proxyTypes", len(ref.ProxyTypes) > 0)
		validateTagMap(v, f("tags"), ref.Tags, tagOpts{selector: true})
		notSet("labels", len(ref.Labels) > 0)
		notSet("namespace", ref.Namespace != "")
		notSet("sectionName", ref.SectionName != "")
	}
}

// topTargetRef returns the policy's top-level targetRef, Mesh when absent (Kuma 2.x default).
func topTargetRef(ref *TargetRef) TargetRef {
	if ref == nil {
		return TargetRef{Kind: KindMesh}
	}
	return *ref
}

func validateDurationNotNegative(v *ValidationErrors, path string, d *Duration) {
	if d == nil {
		return
	}
	dur, ok := d.Get()
	switch {
	case !ok:
		v.Add(path, "must be a valid duration such as \"10s\" or \"1m30s\"")
	case dur < 0:
		v.Add(path, "must not be negative when defined")
	}
}

func validateDurationPositive(v *ValidationErrors, path string, d *Duration) {
	if d == nil {
		return
	}
	dur, ok := d.Get()
	switch {
	case !ok:
		v.Add(path, "must be a valid duration such as \"10s\" or \"1m30s\"")
	case dur <= 0:
		v.Add(path, "must be greater than zero when defined")
	}
}

// backendNames checks a list of named backends: names set and unique.
func backendNames(v *ValidationErrors, path string, names []string) map[string]bool {
	seen := make(map[string]bool, len(names))
	for i, n := range names {
		p := idxPath(path, i) + ".name"
		if n == "" {
			v.Add(p, "cannot be empty")
			continue
		}
		if seen[n] {
			v.Add(p, "%q name is already used for another backend", n)
		}
		seen[n] = true
	}
	return seen
}

func oneOf(v *ValidationErrors, path, value string, allowed ...string) {
	if !slices.Contains(allowed, value) {
		v.Add(path, "%s", fmt.Sprintf("value %q is not supported. %s", value, allowedValuesHint(allowed...)))
	}
}
