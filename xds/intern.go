package xds

import (
	"bytes"
	"hash/maphash"
	"strconv"

	"google.golang.org/protobuf/types/known/anypb"
)

// Interning. Proxies of the same service mostly get the same clusters and
// many of the same listeners (an outbound to a service is the same bytes
// for every proxy that has it), and often the very same set of clusters. A
// proxy's config is marshalled on its own (outside mu, in parallel), then
// installed: a set of resources equal to one already installed for another
// proxy is shared whole, else each resource equal to one already installed
// is. What is interned counts its users and is forgotten with the last one.
// It all happens under the cache mutex; what is shared is never modified.

// interns are the cache's shared resources and sets.
type interns struct {
	seed maphash.Seed
	res  map[uint64]*sharedAny // by hash of type URL and bytes
	sets map[string]*sharedSet // by type URL and content hash
}

type sharedAny struct {
	any  *anypb.Any
	refs int
}

type sharedSet struct {
	body *setBody
	refs int
}

func newInterns() interns {
	return interns{seed: maphash.MakeSeed(), res: map[uint64]*sharedAny{}, sets: map[string]*sharedSet{}}
}

func (in *interns) resKey(a *anypb.Any) uint64 {
	var h maphash.Hash
	h.SetSeed(in.seed)
	_, _ = h.WriteString(a.TypeUrl)
	_, _ = h.Write(a.Value)
	return h.Sum64()
}

func setKey(typeURL string, sum uint64) string {
	return typeURL + " " + strconv.FormatUint(sum, 16)
}

// hold counts ts's proxy as a user of what ts holds, replacing ts's body or
// resources by equal ones already installed.
func (in *interns) hold(typeURL string, ts *typeSet) {
	key := setKey(typeURL, ts.sum)
	if e := in.sets[key]; e != nil && sameBody(e.body, ts.setBody) {
		e.refs++
		ts.setBody = e.body
		return
	}
	for name, a := range ts.res {
		k := in.resKey(a)
		switch e := in.res[k]; {
		case e == nil:
			in.res[k] = &sharedAny{any: a, refs: 1}
		case e.any.TypeUrl == a.TypeUrl && bytes.Equal(e.any.Value, a.Value):
			e.refs++
			ts.res[name] = e.any
		default:
			// A hash collision: this one stays the proxy's own.
		}
	}
	if _, taken := in.sets[key]; !taken {
		in.sets[key] = &sharedSet{body: ts.setBody, refs: 1}
		ts.shared = key
	}
}

// release forgets one user of ts (counted by hold).
func (in *interns) release(ts *typeSet) {
	if ts == nil {
		return
	}
	if ts.shared != "" {
		e := in.sets[ts.shared]
		if e == nil || e.body != ts.setBody {
			return // cannot happen: a shared body stays in the table while used
		}
		if e.refs--; e.refs > 0 {
			return
		}
		delete(in.sets, ts.shared)
	}
	for _, a := range ts.res {
		k := in.resKey(a)
		if e := in.res[k]; e != nil && e.any == a {
			if e.refs--; e.refs == 0 {
				delete(in.res, k)
			}
		}
	}
}

// sameBody reports whether a and b hold the same resources, byte for byte.
func sameBody(a, b *setBody) bool {
	if len(a.names) != len(b.names) {
		return false
	}
	for i, n := range a.names {
		if b.names[i] != n {
			return false
		}
		x, y := a.res[n], b.res[n]
		if x != y && (y == nil || x.TypeUrl != y.TypeUrl || !bytes.Equal(x.Value, y.Value)) {
			return false
		}
	}
	return true
}
