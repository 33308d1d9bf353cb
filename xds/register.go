package xds

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// MetadataDataplane is the node metadata field a proxy sends its Dataplane
// in (JSON or YAML), as kuma-dp does.
const MetadataDataplane = "dataplane.resource"

// RegisterUnavailablePrefix starts the message of the UNAVAILABLE status a
// proxy gets when its Dataplane cannot be written now (no quorum, the
// replica shutting down): the proxy is refused until the cluster can write.
const RegisterUnavailablePrefix = "cannot register Dataplane "

// registerTimeout bounds the write that registers a Dataplane.
const registerTimeout = 10 * time.Second

func nodeDataplane(node *core.Node) []byte {
	v := node.GetMetadata().GetFields()[MetadataDataplane]
	if v == nil {
		return nil
	}
	if s := v.GetStringValue(); strings.TrimSpace(s) != "" {
		return []byte(s)
	}
	return nil
}

// register makes sure the Dataplane k exists. A proxy may bring its own
// (doc); it is validated like an API write and written through the log,
// labelled as registered by its proxy. A Dataplane created through the API
// is used as it is. The write ends with ctx (the proxy's stream, so a proxy
// that leaves cancels it) or after registerTimeout.
func (s *Server) register(ctx context.Context, k resource.Key, doc []byte) error {
	existing, exists := s.opts.State.Get(k)
	if doc == nil {
		if !exists {
			s.m.registrations.WithLabelValues("not_found").Inc()
			return status.Errorf(codes.NotFound, "Dataplane %q in mesh %q does not exist; create it or send it in node metadata %q", k.Name, k.Mesh, MetadataDataplane)
		}
		return nil
	}
	r, err := decodeDataplane(k, doc)
	if err != nil {
		s.m.registrations.WithLabelValues("invalid").Inc()
		return err
	}
	if exists {
		if existing.Labels[fsm.LabelRegisteredBy] != fsm.RegisteredByProxy {
			return nil // created through the API: the API owns it
		}
		if reflect.DeepEqual(existing.Spec, r.Spec) && maps.Equal(existing.Labels, r.Labels) {
			return nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	put := &fsm.PutCommand{Resource: r}
	if exists {
		v := existing.Version
		put.IfVersion = &v
	} else {
		zero := uint64(0)
		put.IfVersion = &zero
	}
	res, err := s.opts.Cluster.Apply(ctx, fsm.Command{Type: fsm.CmdPut, Put: put})
	if err == nil {
		err = res.Err
	}
	switch {
	case err == nil:
		s.m.registrations.WithLabelValues("ok").Inc()
		s.log.Info("dataplane registered by its proxy", "dataplane", k.String(), "updated", exists)
		return nil
	case errors.Is(err, fsm.ErrAlreadyExists), errors.Is(err, fsm.ErrConflict):
		return nil // another stream of the same proxy won the race
	case errors.Is(err, fsm.ErrMeshNotFound):
		s.m.registrations.WithLabelValues("invalid").Inc()
		return status.Errorf(codes.InvalidArgument, "%s: mesh %q does not exist", MetadataDataplane, k.Mesh)
	}
	var verrs resource.ValidationErrors
	if errors.As(err, &verrs) {
		s.m.registrations.WithLabelValues("invalid").Inc()
		return status.Errorf(codes.InvalidArgument, "%s: %v", MetadataDataplane, verrs)
	}
	s.m.registrations.WithLabelValues("unavailable").Inc()
	return status.Errorf(codes.Unavailable, RegisterUnavailablePrefix+"%s: %v", k, err)
}

// decodeDataplane parses and validates a Dataplane a proxy sent, naming the
// offending field in an InvalidArgument status.
func decodeDataplane(k resource.Key, doc []byte) (*resource.Resource, error) {
	format := resource.JSON
	if t := strings.TrimSpace(string(doc)); !strings.HasPrefix(t, "{") {
		format = resource.YAML
	}
	r, err := resource.Decode(doc, format)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s: %v", MetadataDataplane, err)
	}
	if r.Type != resource.TypeDataplane {
		return nil, status.Errorf(codes.InvalidArgument, "%s: type: must be Dataplane, got %q", MetadataDataplane, r.Type)
	}
	if r.Mesh == "" {
		r.Mesh = k.Mesh
	}
	if r.Name == "" {
		r.Name = k.Name
	}
	if r.Mesh != k.Mesh {
		return nil, status.Errorf(codes.InvalidArgument, "%s: mesh: %q does not match node id mesh %q", MetadataDataplane, r.Mesh, k.Mesh)
	}
	if r.Name != k.Name {
		return nil, status.Errorf(codes.InvalidArgument, "%s: name: %q does not match node id name %q", MetadataDataplane, r.Name, k.Name)
	}
	resource.Default(r)
	if verrs := resource.Validate(r); len(verrs) > 0 {
		return nil, status.Errorf(codes.InvalidArgument, "%s: %v", MetadataDataplane, verrs)
	}
	labels := maps.Clone(r.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[fsm.LabelRegisteredBy] = fsm.RegisteredByProxy
	r.Labels = labels
	return r, nil
}

// runReregister puts back the Dataplane of a connected, self-registered
// proxy when it disappeared from the state (the leader removed it while the
// proxy was partitioned away with this replica, or someone deleted it).
func (s *Server) runReregister(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		type todo struct {
			k   resource.Key
			doc []byte
		}
		var list []todo
		seen := map[resource.Key]bool{}
		s.mu.Lock()
		for _, st := range s.mu.streams {
			if st.hasNode && st.regDoc != nil && !seen[st.key] {
				seen[st.key] = true
				if _, ok := s.opts.State.Get(st.key); !ok {
					list = append(list, todo{st.key, st.regDoc})
				}
			}
		}
		s.mu.Unlock()
		for _, t := range list {
			if ok, _ := s.opts.Cluster.Ready(); !ok {
				break
			}
			if err := s.register(ctx, t.k, t.doc); err != nil {
				s.log.Warn("cannot re-register a connected proxy's Dataplane", "dataplane", t.k.String(), "err", err)
			} else {
				s.log.Info("re-registered the Dataplane of a connected proxy", "dataplane", t.k.String())
			}
		}
	}
}

var _ = fmt.Sprintf
