package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/httpapi"
	"github.com/maskpredictor/maskpredictor/labels"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// Limits of the JSON API.
const (
	// MaxBodyBytes bounds a request body (413 beyond): a label of the
	// largest name the predictor accepts encodes to well under it.
	MaxBodyBytes = 64 << 10
	// DefaultReviewLimit and MaxReviewLimit bound ?limit= of the review queue.
	DefaultReviewLimit = 20
	MaxReviewLimit     = 200
	// DefaultListCount and MaxListCount bound ?count= of the label list.
	DefaultListCount = 100
	MaxListCount     = 1000
)

// csrf refuses unsafe cross-origin requests (a browser resends Basic
// credentials by itself, so a foreign page could otherwise label through
// the person's session), answering 403 in JSON like the rest of the API.
func csrf(h http.Handler) http.Handler {
	p := http.NewCrossOriginProtection()
	p.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteError(w, http.StatusForbidden, "cross-origin request refused")
	}))
	return p.Handler(h)
}

type userKey struct{}

func withUser(ctx context.Context, who string) context.Context {
	return context.WithValue(ctx, userKey{}, who)
}

// userOf is who authenticated the request (labelled_by's default).
func userOf(ctx context.Context) string {
	s, _ := ctx.Value(userKey{}).(string)
	return s
}

// serveAPI routes /admin/api/. Authentication and CSRF were checked.
func (h *Handler) serveAPI(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, APIPrefix)
	type route struct {
		methods string
		serve   func(http.ResponseWriter, *http.Request)
	}
	var rt route
	switch path {
	case "review":
		rt = route{"GET, HEAD", h.apiReview}
	case "labels":
		rt = route{"GET, HEAD, PUT, DELETE", h.apiLabels}
	case "redecode":
		rt = route{"POST", h.apiRedecode}
	default:
		httpapi.WriteError(w, http.StatusNotFound, "not found")
		return
	}
	if !strings.Contains(rt.methods, r.Method) {
		w.Header().Set("Allow", rt.methods)
		httpapi.WriteError(w, http.StatusMethodNotAllowed, "method not allowed: use "+rt.methods)
		return
	}
	if unsafe(r.Method) && h.cfg.ReadOnly {
		httpapi.WriteError(w, http.StatusForbidden, "the dashboard is read-only (ADMIN_READ_ONLY=true)")
		return
	}
	rt.serve(w, r)
}

func unsafe(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

// writeJSONValue answers v as JSON.
func writeJSONValue(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		httpapi.WriteError(w, http.StatusInternalServerError, "encoding the answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// readBody reads at most MaxBodyBytes; false when it answered already.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		httpapi.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", MaxBodyBytes))
		return nil, false
	case err != nil:
		httpapi.WriteError(w, http.StatusBadRequest, "reading the request body: "+err.Error())
		return nil, false
	}
	return b, true
}

// storeFailed answers a Redis failure of the label store: 503, the detail
// (addresses) in the log only.
func (h *Handler) storeFailed(w http.ResponseWriter, what string, err error) {
	h.log.Warn("admin: label store", zap.String("op", what), zap.Error(err))
	httpapi.WriteError(w, http.StatusServiceUnavailable, what+": Redis unavailable")
}

// errNoStore is the answer without Redis.
const errNoStore = "the label store needs Redis: not configured"

func (h *Handler) apiReview(w http.ResponseWriter, r *http.Request) {
	limit := DefaultReviewLimit
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxReviewLimit {
			httpapi.WriteError(w, http.StatusBadRequest, fmt.Sprintf("limit must be an integer from 1 to %d", MaxReviewLimit))
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
	defer cancel()
	q, err := h.reviewQueue(ctx, limit)
	if err != nil {
		h.reviewFailed(w, err)
		return
	}
	out := predictor.NewReviewQueue(q.items, q.candidates, q.crf.Version())
	out.Partial = q.partial
	writeJSONValue(w, http.StatusOK, out)
}

// reviewFailed answers an error of reviewQueue.
func (h *Handler) reviewFailed(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, errNoModel), errors.Is(err, errNoLabels):
		httpapi.WriteError(w, http.StatusServiceUnavailable, err.Error())
	default:
		h.storeFailed(w, "computing the review queue", err)
	}
}

func (h *Handler) apiLabels(w http.ResponseWriter, r *http.Request) {
	st := h.cfg.Labels
	if st == nil {
		httpapi.WriteError(w, http.StatusServiceUnavailable, errNoStore)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
	defer cancel()
	switch r.Method {
	case http.MethodPut:
		h.putLabel(ctx, w, r, st)
	case http.MethodDelete:
		name := r.URL.Query().Get("mask_name")
		if strings.TrimSpace(name) == "" {
			httpapi.WriteError(w, http.StatusBadRequest, "mask_name is required (DELETE /admin/api/labels?mask_name=…)")
			return
		}
		found, err := st.Delete(ctx, name)
		if err != nil {
			h.storeFailed(w, "deleting the label", err)
			return
		}
		h.forget(name)
		writeJSONValue(w, http.StatusOK, map[string]bool{"deleted": found})
	default: // GET, HEAD
		h.listLabels(ctx, w, r, st)
	}
}

func (h *Handler) putLabel(ctx context.Context, w http.ResponseWriter, r *http.Request, st *labels.Store) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var l labels.Label
	if err := l.UnmarshalJSON(body); err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	// The server stamps the time; the source says which of the dashboard's
	// two ways in was used (the page sends "dashboard").
	l.LabelledAt = time.Time{}
	switch l.Source {
	case "":
		l.Source = labels.SourceAPI
	case labels.SourceAPI, labels.SourceDashboard:
	default:
		httpapi.WriteError(w, http.StatusBadRequest, fmt.Sprintf("%s: source must be %q or %q here", labels.ErrInvalid, labels.SourceAPI, labels.SourceDashboard))
		return
	}
	if l.LabelledBy == "" {
		l.LabelledBy = userOf(r.Context())
	}
	stored, warnings, err := st.Put(ctx, l)
	switch {
	case errors.Is(err, labels.ErrInvalid):
		httpapi.WriteError(w, http.StatusBadRequest, err.Error())
		return
	case errors.Is(err, labels.ErrFull):
		httpapi.WriteError(w, http.StatusInsufficientStorage, err.Error())
		return
	case err != nil:
		h.storeFailed(w, "storing the label", err)
		return
	}
	h.forget(stored.MaskName)
	if warnings == nil {
		warnings = []string{}
	}
	writeJSONValue(w, http.StatusOK, struct {
		Label    labels.Label `json:"label"`
		Warnings []string     `json:"warnings"`
	}{stored, warnings})
}

func (h *Handler) listLabels(ctx context.Context, w http.ResponseWriter, r *http.Request, st *labels.Store) {
	q := r.URL.Query()
	if name := q.Get("mask_name"); name != "" { // one name
		l, found, err := st.Get(ctx, name)
		if err != nil {
			h.storeFailed(w, "reading the label", err)
			return
		}
		if !found {
			httpapi.WriteError(w, http.StatusNotFound, "no label for that mask_name")
			return
		}
		writeJSONValue(w, http.StatusOK, map[string]labels.Label{"label": l})
		return
	}
	var cursor uint64
	if s := q.Get("cursor"); s != "" {
		c, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, "cursor must be the next_cursor of a previous page")
			return
		}
		cursor = c
	}
	count := DefaultListCount
	if s := q.Get("count"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxListCount {
			httpapi.WriteError(w, http.StatusBadRequest, fmt.Sprintf("count must be an integer from 1 to %d", MaxListCount))
			return
		}
		count = n
	}
	page, err := st.List(ctx, cursor, count)
	if err != nil {
		h.storeFailed(w, "listing labels", err)
		return
	}
	if page.Labels == nil {
		page.Labels = []labels.Label{}
	}
	writeJSONValue(w, http.StatusOK, struct {
		Labels []labels.Label `json:"labels"`
		Next   string         `json:"next_cursor"`
	}{page.Labels, strconv.FormatUint(page.Next, 10)})
}

func (h *Handler) apiRedecode(w http.ResponseWriter, r *http.Request) {
	crf := h.currentCRF()
	if crf == nil {
		httpapi.WriteError(w, http.StatusServiceUnavailable, errNoModel.Error())
		return
	}
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	var req struct {
		MaskName *string           `json:"mask_name"`
		Fixed    map[string]string `json:"fixed"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, "invalid JSON: "+err.Error())
		return
	}
	if req.MaskName == nil {
		httpapi.WriteError(w, http.StatusBadRequest, "mask_name is required")
		return
	}
	fixed := make(map[int]string, len(req.Fixed))
	for k, v := range req.Fixed {
		i, err := strconv.Atoi(k)
		if err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, fmt.Sprintf("fixed: key %q is not a token index", k))
			return
		}
		fixed[i] = v
	}
	p, err := crf.PredictFixed(*req.MaskName, fixed)
	if err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	p.NormalizedName = predictor.Normalize(p.MaskName)
	writeJSONValue(w, http.StatusOK, map[string]*predictor.Prediction{"prediction": p})
}

// forget tells the process's in-memory answers that a name's label changed.
func (h *Handler) forget(maskName string) {
	if h.cfg.Forget != nil {
		if norm := predictor.Normalize(maskName); norm != "" {
			h.cfg.Forget(norm)
		}
	}
}
