package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/kuma-ha/kuma-ha/cluster"
	"github.com/kuma-ha/kuma-ha/fsm"
	"github.com/kuma-ha/kuma-ha/fsm/resource"
)

// Error is Kuma's error body (pkg/core/rest/errors/types.Error): the current
// fields plus the deprecated `details` and `causes` that older kumactl reads.
type Error struct {
	Type              string             `json:"type"`
	Status            int                `json:"status"`
	Title             string             `json:"title"`
	Detail            string             `json:"detail"`
	InvalidParameters []InvalidParameter `json:"invalid_parameters,omitempty"`
	Details           string             `json:"details"`          // deprecated copy of Detail
	Causes            []Cause            `json:"causes,omitempty"` // deprecated copy of InvalidParameters
	// MayHaveApplied is set on every 503 answer to a write: false when the
	// write was refused before it was proposed (safe to retry), true when it
	// was proposed and its outcome is unknown (it may still be applied; read
	// before retrying a conditional write). Not one of Kuma's fields.
	MayHaveApplied *bool `json:"mayHaveApplied,omitempty"`
}

// InvalidParameter names one bad field of a request.
type InvalidParameter struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Cause is the deprecated form of InvalidParameter.
type Cause struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s (%s)", e.Title, e.Detail)
	for _, p := range e.InvalidParameters {
		msg += fmt.Sprintf("; %s: %s", p.Field, p.Reason)
	}
	return msg
}

// finish fills the fields every error carries, as Kuma's HandleError does.
func (e *Error) finish() *Error {
	e.Type = "/std-errors"
	e.Details = e.Detail
	e.Causes = nil
	for _, p := range e.InvalidParameters {
		e.Causes = append(e.Causes, Cause{Field: p.Field, Message: p.Reason})
	}
	return e
}

// badRequest is a 400 naming one field.
func badRequest(title, field, reason string) *Error {
	return &Error{
		Status:            http.StatusBadRequest,
		Title:             title,
		Detail:            field + ": " + reason,
		InvalidParameters: []InvalidParameter{{Field: field, Reason: reason}},
	}
}

func notFound(title, detail string) *Error {
	return &Error{Status: http.StatusNotFound, Title: title, Detail: detail}
}

// Titles follow Kuma's wording.
const (
	titleGet    = "Could not retrieve a resource"
	titleList   = "Could not retrieve resources"
	titlePut    = "Could not create or update a resource"
	titleDelete = "Could not delete a resource"
	titleRead   = "Could not read consistently"
	// TitleNoQuorum is the title of the 503 a write gets without a quorum.
	TitleNoQuorum = "No quorum: the control plane cannot accept writes"
	// TitleNoQuorumRead is the title of the 503 a consistent read gets
	// without a quorum (plain reads are still served).
	TitleNoQuorumRead = "No quorum: the control plane cannot serve consistent reads"
)

// toError is the one table from errors to HTTP answers. unexpected reports
// errors that should never happen (500s), which the caller logs.
func toError(err error, title string) (e *Error, unexpected bool) {
	var (
		apiErr    *Error
		valErrs   resource.ValidationErrors
		decodeErr *resource.DecodeError
		notLeader *cluster.NotLeaderError
	)
	switch {
	case errors.As(err, &apiErr):
		cp := *apiErr
		return &cp, cp.Status >= 500
	case errors.As(err, &valErrs):
		e = &Error{Status: http.StatusBadRequest, Title: title, Detail: "Resource is not valid"}
		for _, v := range valErrs {
			e.InvalidParameters = append(e.InvalidParameters, InvalidParameter{Field: v.Field, Reason: v.Reason})
		}
		return e, false
	case errors.As(err, &decodeErr):
		field := decodeErr.Field
		if field == "" {
			field = "body"
		}
		return badRequest(title, field, decodeErr.Reason), false
	case errors.Is(err, fsm.ErrNotFound):
		return notFound(title, "Not found"), false
	case errors.Is(err, fsm.ErrConflict):
		return &Error{Status: http.StatusPreconditionFailed, Title: title,
			Detail: "Precondition Failed: the resource's version does not match If-Match"}, false
	case errors.Is(err, fsm.ErrAlreadyExists):
		return &Error{Status: http.StatusPreconditionFailed, Title: title,
			Detail: "Precondition Failed: the resource already exists"}, false
	case errors.Is(err, fsm.ErrMeshNotFound):
		e = badRequest(title, "mesh", "mesh does not exist")
		e.Detail = "Mesh is not found"
		return e, false
	case errors.Is(err, cluster.ErrOutcomeUnknown):
		return &Error{Status: http.StatusServiceUnavailable, Title: "No quorum or leader stopped while committing: the outcome of the write is unknown",
			Detail: err.Error()}, false
	case errors.Is(err, cluster.ErrProtocolVersion):
		return &Error{Status: http.StatusServiceUnavailable, Title: "Service unavailable: not every replica supports this write yet (finish the rolling upgrade)",
			Detail: err.Error()}, false
	case errors.Is(err, cluster.ErrUnknownReplica):
		return notFound(title, err.Error()), false
	case errors.Is(err, cluster.ErrNoQuorum):
		t := TitleNoQuorum
		if title == titleRead {
			t = TitleNoQuorumRead
		}
		return &Error{Status: http.StatusServiceUnavailable, Title: t, Detail: err.Error()}, false
	case errors.Is(err, cluster.ErrShuttingDown):
		return &Error{Status: http.StatusServiceUnavailable, Title: "Service unavailable: the replica is shutting down",
			Detail: err.Error()}, false
	case errors.As(err, &notLeader):
		return &Error{Status: http.StatusServiceUnavailable, Title: "Service unavailable: no reachable leader",
			Detail: err.Error()}, false
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusServiceUnavailable, Title: "Service unavailable: timed out",
			Detail: "the request timed out; a write may or may not have been applied: " + err.Error()}, false
	case errors.Is(err, context.Canceled):
		// Kuma answers 499 when the client went away.
		return &Error{Status: 499, Title: title, Detail: err.Error()}, false
	default:
		return &Error{Status: http.StatusInternalServerError, Title: title, Detail: "Internal Server Error"}, true
	}
}

// writeError maps err through the table and writes Kuma's error body.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, title string, err error) {
	e, unexpected := toError(err, title)
	if unexpected {
		s.log.Error("unexpected error", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if e.Status == http.StatusServiceUnavailable && isWrite(r.Method) {
		may := cluster.MayHaveApplied(err)
		e.MayHaveApplied = &may
	}
	writeJSON(w, e.Status, e.finish(), s.log)
}

func writeJSON(w http.ResponseWriter, status int, v any, log *slog.Logger) {
	body, err := json.Marshal(v)
	if err != nil {
		log.Error("encode response", "err", err)
		e := (&Error{Status: http.StatusInternalServerError, Title: "Could not encode the response",
			Detail: "Internal Server Error"}).finish()
		body, _ = json.Marshal(e)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// isWrite: the methods whose 503 says whether the write may still apply.
func isWrite(method string) bool {
	switch method {
	case http.MethodPut, http.MethodPost, http.MethodDelete, http.MethodPatch:
		return true
	}
	return false
}
