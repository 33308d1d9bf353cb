package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kuma-ha/kuma-ha/fsm"
)

// maxRPCBody bounds a forwarded command (a resource plus envelope).
const maxRPCBody = 16 << 20

// rpcHandler serves the replica-to-replica RPC:
//
//	GET  /v1/status     this replica's peerStatus
//	GET  /v1/readindex  (leader) a commit index covering every write acknowledged so far
//	POST /v1/apply      (leader) body: fsm.Encode'd command; response: wireResult
//	POST /v1/remove?name=N (leader) remove a replica from the Raft configuration
func (n *Node) rpcHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.localStatus())
	})
	mux.HandleFunc("GET /v1/readindex", func(w http.ResponseWriter, r *http.Request) {
		idx, err := n.leaderReadIndex(r.Context())
		if err != nil {
			n.writeRPCError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, readIndexResponse{Index: idx})
	})
	mux.HandleFunc("POST /v1/apply", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxRPCBody+1))
		if err != nil {
			n.writeRPCError(w, fmt.Errorf("%w: read body: %w", errBadRequest, err))
			return
		}
		if len(body) > maxRPCBody {
			n.writeRPCError(w, fmt.Errorf("%w: command over %d bytes", errBadRequest, maxRPCBody))
			return
		}
		// Checked, not decoded: the bytes the follower encoded are the ones
		// proposed, and every replica decodes them when it applies them.
		t, err := fsm.Check(body)
		if err != nil {
			n.writeRPCError(w, fmt.Errorf("%w: %w", errBadRequest, err))
			return
		}
		res, err := n.applyOnLeader(r.Context(), t, body)
		if err != nil {
			n.writeRPCError(w, err)
			return
		}
		wr, err := encodeResult(res)
		if err != nil {
			n.writeRPCError(w, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err))
			return
		}
		writeJSON(w, http.StatusOK, wr)
	})
	mux.HandleFunc("POST /v1/remove", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		if name == "" {
			n.writeRPCError(w, fmt.Errorf("%w: name is required", errBadRequest))
			return
		}
		if err := n.removeOnLeader(r.Context(), name); err != nil {
			n.writeRPCError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	})
	return mux
}

func (n *Node) writeRPCError(w http.ResponseWriter, err error) {
	e, status := toRPCError(err)
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// errUnreachable marks an RPC that never reached the peer (dial failed):
// safe to retry elsewhere.
var errUnreachable = errors.New("peer unreachable")

// call performs one RPC to addr (a raft address) and decodes a 200 response into out.
func (n *Node) call(ctx context.Context, method, addr, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, (&url.URL{Scheme: "http", Host: addr}).String()+path, rd)
	if err != nil {
		return fmt.Errorf("rpc %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	resp, err := n.httpClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if isDialError(err) {
			return fmt.Errorf("rpc %s %s to %s: %w: %w", method, path, addr, errUnreachable, err)
		}
		return fmt.Errorf("rpc %s %s to %s: %w", method, path, addr, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxRPCBody))
	if err != nil {
		return fmt.Errorf("rpc %s %s to %s: read response: %w", method, path, addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e rpcError
		if json.Unmarshal(data, &e) != nil || e.Code == "" {
			return fmt.Errorf("rpc %s %s to %s: status %d: %s", method, path, addr, resp.StatusCode, bytes.TrimSpace(data))
		}
		return e.toError()
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("rpc %s %s to %s: decode response: %w", method, path, addr, err)
	}
	return nil
}

func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// localStatus is this replica's answer to GET /v1/status.
func (n *Node) localStatus() peerStatus {
	st := peerStatus{Name: n.cfg.Name, ClusterID: n.ClusterID(), LastContactMs: -1}
	if n.raft == nil {
		return st
	}
	lastIndex, lastTerm := n.lastLog()
	st.State = roleName(n.raft.State())
	_, leaderID := n.raft.LeaderWithID()
	st.Leader = string(leaderID)
	st.LastIndex = lastIndex
	st.LastTerm = lastTerm
	st.CommitIndex = n.raft.CommitIndex()
	st.AppliedIndex = n.state.AppliedIndex()
	if cfg, err := n.configuration(); err == nil && len(cfg.Servers) > 0 {
		st.HasState = true
	}
	if lastIndex > 0 {
		st.HasState = true
	}
	if n.raft.State() == raft.Leader {
		st.LastContactMs = 0
	} else if lc := n.raft.LastContact(); !lc.IsZero() {
		st.LastContactMs = time.Since(lc).Milliseconds()
	}
	return st
}
