package ops

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// descriptor resolves the {plural} path segment and checks the type's scope
// fits the route; it writes a 404 and returns nil otherwise.
func (s *server) descriptor(w http.ResponseWriter, r *http.Request, title string, scope resource.Scope, anyScope bool) *resource.Descriptor {
	plural := r.PathValue("plural")
	d, ok := resource.DescriptorByPlural(plural)
	if !ok {
		s.writeError(w, r, title, notFound(title, fmt.Sprintf("unknown resource type %q in the path", plural)))
		return nil
	}
	if !anyScope && d.Scope != scope {
		where := "/" + d.Plural + "/{name}"
		if d.Scope == resource.ScopeMesh {
			where = "/meshes/{mesh}/" + d.Plural + "/{name}"
		}
		s.writeError(w, r, title, notFound(title, fmt.Sprintf("%s is not served here; use %s", d.Type, where)))
		return nil
	}
	return d
}

// listResponse is Kuma's list shape.
type listResponse[T any] struct {
	Total int     `json:"total"`
	Items []T     `json:"items"`
	Next  *string `json:"next"`
}

// page parses ?size= and ?offset= and returns the window [lo, hi) of n items
// and the URL of the next page (nil on the last page).
func page(r *http.Request, n int) (lo, hi int, next *string, err error) {
	q := r.URL.Query()
	size := defaultPageSize
	if v := q.Get("size"); v != "" {
		size, err = strconv.Atoi(v)
		if err != nil || size < 1 {
			return 0, 0, nil, badRequest(titleList, "size", fmt.Sprintf("invalid page size %q: must be an integer between 1 and %d", v, maxPageSize))
		}
		if size > maxPageSize {
			return 0, 0, nil, badRequest(titleList, "size", fmt.Sprintf("invalid page size of %d: maximum page size is %d", size, maxPageSize))
		}
	}
	offset := 0
	if v := q.Get("offset"); v != "" {
		offset, err = strconv.Atoi(v)
		if err != nil || offset < 0 {
			return 0, 0, nil, badRequest(titleList, "offset", fmt.Sprintf("invalid offset %q: must be a non-negative integer", v))
		}
	}
	lo = min(offset, n)
	hi = min(lo+size, n)
	if hi < n {
		nq := url.Values{}
		for k, vs := range q {
			nq[k] = vs
		}
		nq.Set("offset", strconv.Itoa(hi))
		nq.Set("size", strconv.Itoa(size))
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		u := url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawQuery: nq.Encode()}
		link := u.String()
		next = &link
	}
	return lo, hi, next, nil
}

func writeList[T any](s *server, w http.ResponseWriter, r *http.Request, items []T) {
	lo, hi, next, err := page(r, len(items))
	if err != nil {
		s.writeError(w, r, titleList, err)
		return
	}
	out := listResponse[T]{Total: len(items), Items: items[lo:hi], Next: next}
	if out.Items == nil {
		out.Items = []T{}
	}
	writeJSON(w, http.StatusOK, out, s.log)
}

// kumaOnlyPlurals are list paths of Kuma types this control plane does not
// serve; Kuma's kumactl lists them (get secrets, get global-secrets, ...),
// and an empty list is the true answer: none can exist here.
var kumaOnlyPlurals = map[string]bool{
	"circuit-breakers": true, "external-services": true, "fault-injections": true, "global-secrets": true, "globalsecrets": true,
	"health-checks": true, "hostnamegenerators": true, "meshaccesslogs": true, "meshcircuitbreakers": true,
	"meshexternalservices": true, "meshfaultinjections": true, "meshgatewayroutes": true, "meshgateways": true,
	"meshhealthchecks": true, "meshhttproutes": true, "meshidentities": true, "meshloadbalancingstrategies": true,
	"meshmetrics": true, "meshmultizoneservices": true, "meshopentelemetrybackends": true, "meshpassthroughs": true,
	"meshproxypatches": true, "meshratelimits": true, "meshretries": true, "meshservices": true, "meshtcproutes": true,
	"meshtlses": true, "meshtraces": true, "meshtrusts": true, "meshzoneaddresses": true, "proxytemplates": true,
	"rate-limits": true, "retries": true, "secrets": true, "timeouts": true, "traffic-logs": true,
	"traffic-permissions": true, "traffic-traces": true, "virtual-outbounds": true, "workloads": true,
	"zone-insights": true, "zone-ingress-insights": true, "zoneegressinsights": true,
}

// listKumaOnly answers a list of a Kuma type not served here with an empty
// list; it reports false when plural is not such a type.
func (s *server) listKumaOnly(w http.ResponseWriter, r *http.Request) bool {
	if _, ok := resource.DescriptorByPlural(r.PathValue("plural")); ok || !kumaOnlyPlurals[r.PathValue("plural")] {
		return false
	}
	writeList(s, w, r, []struct{}{})
	return true
}

func (s *server) handleListAll(w http.ResponseWriter, r *http.Request) {
	if s.listKumaOnly(w, r) {
		return
	}
	d := s.descriptor(w, r, titleList, 0, true)
	if d == nil {
		return
	}
	writeList(s, w, r, s.state.List(d.Type, ""))
}

func (s *server) handleListMesh(w http.ResponseWriter, r *http.Request) {
	if s.listKumaOnly(w, r) {
		return
	}
	d := s.descriptor(w, r, titleList, resource.ScopeMesh, false)
	if d == nil {
		return
	}
	writeList(s, w, r, s.state.List(d.Type, r.PathValue("mesh")))
}

func (s *server) handleGetGlobal(w http.ResponseWriter, r *http.Request) {
	if d := s.descriptor(w, r, titleGet, resource.ScopeGlobal, false); d != nil {
		s.getOne(w, r, resource.Key{Type: d.Type, Name: r.PathValue("name")})
	}
}

func (s *server) handleGetMeshed(w http.ResponseWriter, r *http.Request) {
	if d := s.descriptor(w, r, titleGet, resource.ScopeMesh, false); d != nil {
		s.getOne(w, r, resource.Key{Type: d.Type, Mesh: r.PathValue("mesh"), Name: r.PathValue("name")})
	}
}

func (s *server) getOne(w http.ResponseWriter, r *http.Request, k resource.Key) {
	res, ok := s.state.Get(k)
	if !ok {
		s.writeError(w, r, titleGet, fsm.ErrNotFound)
		return
	}
	w.Header().Set("ETag", etag(res.Version))
	writeJSON(w, http.StatusOK, res, s.log)
}

func (s *server) handlePutGlobal(w http.ResponseWriter, r *http.Request) {
	if d := s.descriptor(w, r, titlePut, resource.ScopeGlobal, false); d != nil {
		s.put(w, r, d, "", r.PathValue("name"))
	}
}

func (s *server) handlePutMeshed(w http.ResponseWriter, r *http.Request) {
	if d := s.descriptor(w, r, titlePut, resource.ScopeMesh, false); d != nil {
		s.put(w, r, d, r.PathValue("mesh"), r.PathValue("name"))
	}
}

func (s *server) handleDeleteGlobal(w http.ResponseWriter, r *http.Request) {
	if d := s.descriptor(w, r, titleDelete, resource.ScopeGlobal, false); d != nil {
		s.del(w, r, resource.Key{Type: d.Type, Name: r.PathValue("name")})
	}
}

func (s *server) handleDeleteMeshed(w http.ResponseWriter, r *http.Request) {
	if d := s.descriptor(w, r, titleDelete, resource.ScopeMesh, false); d != nil {
		if d.ReadOnly {
			s.writeError(w, r, titleDelete, readOnly(titleDelete, d))
			return
		}
		s.del(w, r, resource.Key{Type: d.Type, Mesh: r.PathValue("mesh"), Name: r.PathValue("name")})
	}
}

// put decodes, checks and proposes one resource; the state machine decides.
func (s *server) put(w http.ResponseWriter, r *http.Request, d *resource.Descriptor, mesh, name string) {
	res, err := s.decodeBody(w, r, d, mesh, name)
	if err != nil {
		s.writeError(w, r, titlePut, err)
		return
	}
	resource.Default(res)
	if verrs := resource.Validate(res); len(verrs) > 0 {
		s.writeError(w, r, titlePut, verrs)
		return
	}
	cond, err := parseIfMatch(r.Header.Get("If-Match"))
	if err != nil {
		s.writeError(w, r, titlePut, err)
		return
	}
	put := &fsm.PutCommand{Resource: res}
	switch {
	case cond.never:
		s.writeError(w, r, titlePut, fsm.ErrConflict)
		return
	case cond.any:
		// If-Match: * means "only if it exists"; the log has no such condition,
		// so check the local state (a concurrent delete may still win).
		if _, ok := s.state.Get(res.Key()); !ok {
			s.writeError(w, r, titlePut, fsm.ErrConflict)
			return
		}
	case cond.version != 0:
		v := cond.version
		put.IfVersion = &v
	}
	if inm := strings.TrimSpace(r.Header.Get("If-None-Match")); inm != "" {
		if inm != "*" {
			s.writeError(w, r, titlePut, badRequest(titlePut, "If-None-Match", `only "*" is supported`))
			return
		}
		if put.IfVersion != nil || cond.any {
			s.writeError(w, r, titlePut, badRequest(titlePut, "If-None-Match", "cannot be combined with If-Match"))
			return
		}
		zero := uint64(0)
		put.IfVersion = &zero
	}
	result, ok := s.apply(w, r, titlePut, fsm.Command{Type: fsm.CmdPut, Put: put})
	if !ok {
		return
	}
	// A resource's version is the index of the entry that stored it.
	w.Header().Set("ETag", etag(result.Index))
	w.Header().Set("Content-Length", "0")
	if result.Created {
		w.WriteHeader(http.StatusCreated)
	} else {
		w.WriteHeader(http.StatusOK)
	}
}

func (s *server) del(w http.ResponseWriter, r *http.Request, k resource.Key) {
	cond, err := parseIfMatch(r.Header.Get("If-Match"))
	if err != nil {
		s.writeError(w, r, titleDelete, err)
		return
	}
	if cond.never {
		s.writeError(w, r, titleDelete, fsm.ErrConflict)
		return
	}
	// If-Match: * (any version) is the same as unconditional: a missing resource is a 404 either way.
	if _, ok := s.apply(w, r, titleDelete, fsm.Command{Type: fsm.CmdDelete,
		Delete: &fsm.DeleteCommand{Key: k, IfVersion: cond.version}}); !ok {
		return
	}
	writeJSON(w, http.StatusOK, struct{}{}, s.log)
}

// apply proposes cmd and writes the error answer when it fails or is rejected.
func (s *server) apply(w http.ResponseWriter, r *http.Request, title string, cmd fsm.Command) (*fsm.Result, bool) {
	result, err := s.backend.Apply(r.Context(), cmd)
	if err == nil && result == nil {
		err = errors.New("backend returned no result")
	}
	if err == nil {
		err = result.Err
	}
	// Reads on this replica include the write from now on (WaitVisible):
	// report an index that includes it.
	index := s.state.AppliedIndex()
	if result != nil && result.Index > index {
		index = result.Index
	}
	w.Header().Set(HeaderIndex, strconv.FormatUint(index, 10))
	if err != nil {
		s.writeError(w, r, title, err)
		return nil, false
	}
	return result, true
}

// decodeBody reads and decodes the PUT body and checks it against the URL.
func (s *server) decodeBody(w http.ResponseWriter, r *http.Request, d *resource.Descriptor, mesh, name string) (*resource.Resource, error) {
	if d.ReadOnly {
		return nil, readOnly(titlePut, d)
	}
	if d.GlobalOnly && s.cfg.Mode != "global" {
		return nil, badRequest(titlePut, "type", fmt.Sprintf("%s can be written only on a global control plane; this one runs in %s mode", d.Type, s.cfg.Mode))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodySize))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			e := badRequest(titlePut, "body", fmt.Sprintf("the request body is larger than the limit of %d bytes", tooBig.Limit))
			e.Title = "Bad Request"
			return nil, e
		}
		return nil, badRequest(titlePut, "body", "could not read the request body: "+err.Error())
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil, badRequest(titlePut, "body", "the request body is empty")
	}
	format := resource.JSON
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil {
			return nil, badRequest(titlePut, "Content-Type", fmt.Sprintf("malformed media type %q", ct))
		}
		switch mt {
		case "application/yaml", "text/yaml", "application/x-yaml", "text/x-yaml":
			format = resource.YAML
		}
	}
	res, err := resource.Decode(body, format)
	if err != nil {
		var de *resource.DecodeError
		if errors.As(err, &de) {
			return nil, err
		}
		return nil, badRequest(titlePut, "body", err.Error())
	}
	if res == nil {
		return nil, badRequest(titlePut, "body", "the request body holds no resource")
	}
	if res.Type != d.Type {
		return nil, badRequest(titlePut, "type", fmt.Sprintf("type %q in the body does not match type %q of the URL", res.Type, d.Type))
	}
	switch {
	case res.Name == "":
		res.Name = name
	case res.Name != name:
		return nil, badRequest(titlePut, "name", fmt.Sprintf("name %q in the body does not match name %q of the URL", res.Name, name))
	}
	if d.Scope == resource.ScopeMesh {
		switch {
		case res.Mesh == "":
			res.Mesh = mesh
		case res.Mesh != mesh:
			return nil, badRequest(titlePut, "mesh", fmt.Sprintf("mesh %q in the body does not match mesh %q of the URL", res.Mesh, mesh))
		}
	} else if res.Mesh != "" {
		return nil, badRequest(titlePut, "mesh", fmt.Sprintf("a %s is not inside a mesh; remove the mesh field", d.Type))
	}
	return res, nil
}

// etag renders a version as a strong entity tag.
func etag(version uint64) string { return `"` + strconv.FormatUint(version, 10) + `"` }

// ifMatch is a parsed If-Match header.
type ifMatch struct {
	version uint64 // 0: no condition
	any     bool   // "*"
	never   bool   // a tag no version can match ("0")
}

// parseIfMatch accepts `"5"`, `5`, `W/"5"` and `*`.
func parseIfMatch(h string) (ifMatch, error) {
	h = strings.TrimSpace(h)
	if h == "" {
		return ifMatch{}, nil
	}
	if h == "*" {
		return ifMatch{any: true}, nil
	}
	bad := func(reason string) (ifMatch, error) {
		return ifMatch{}, badRequest("Bad Request", "If-Match", reason)
	}
	if strings.Contains(h, ",") {
		return bad("only one entity tag is supported")
	}
	tag := strings.TrimPrefix(h, "W/")
	if len(tag) >= 2 && tag[0] == '"' && tag[len(tag)-1] == '"' {
		tag = tag[1 : len(tag)-1]
	}
	v, err := strconv.ParseUint(tag, 10, 64)
	if err != nil {
		return bad(fmt.Sprintf("malformed entity tag %q: want the resource's version, as in its ETag", h))
	}
	if v == 0 {
		return ifMatch{never: true}, nil
	}
	return ifMatch{version: v}, nil
}

// readOnly is the answer to a write of a type only the control plane writes.
func readOnly(title string, d *resource.Descriptor) *Error {
	return badRequest(title, "type", fmt.Sprintf("%s is read-only: the control plane writes it", d.Type))
}
