package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// DefaultMaxBodyBytes is the largest request body accepted (413 above).
const DefaultMaxBodyBytes = 1 << 20

// Config configures a Server.
type Config struct {
	// Engine answers names. Required.
	Engine *Engine
	// Status reports the serving model for /health. Required.
	Status StatusFunc
	// Redis, when set, is pinged by /health ("redis": "ok" or
	// "unreachable"); without it /health says "disabled".
	Redis redis.UniversalClient
	// Worker, when set (run), reports the in-process worker: /health is
	// "degraded" while its Redis gate holds calls back (a Redis that refuses
	// writes, OOM, still answers the ping).
	Worker func() WorkerStats
	// Metrics, when set, is served on /metrics and counts requests.
	Metrics *Metrics
	// MetricsToken, when set, is the bearer token /metrics requires.
	MetricsToken string
	// Admin, when set, is mounted at /admin/ (it does its own
	// authentication); without it /admin/ is a 404.
	Admin http.Handler
	// MaxBodyBytes bounds request bodies. Default 1 MiB.
	MaxBodyBytes int64
	// HealthTimeout bounds /health's Redis ping. Default 1 s.
	HealthTimeout time.Duration
	// Logger gets one line per failed request (5xx at Error) and, at
	// Debug, one per request. Default: no-op.
	Logger *zap.Logger
}

// Server is the HTTP API's handler. Safe for concurrent use.
type Server struct {
	cfg     Config
	log     *zap.Logger
	health  healthLog
	metrics http.Handler
	bufs    sync.Pool // *bytes.Buffer: request bodies
	outs    sync.Pool // *[]byte: response bodies
	ctJSON  []string
	allowP  []string
	allowG  []string
}

// NewServer returns the API for cfg.
func NewServer(cfg Config) (*Server, error) {
	switch {
	case cfg.Engine == nil:
		return nil, errors.New("httpapi: Config.Engine is required")
	case cfg.Status == nil:
		return nil, errors.New("httpapi: Config.Status is required")
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger,
		ctJSON: []string{"application/json"},
		allowP: []string{"POST"},
		allowG: []string{"GET, HEAD"},
	}
	s.bufs.New = func() any { return new(bytes.Buffer) }
	s.outs.New = func() any { b := make([]byte, 0, 1024); return &b }
	if cfg.Metrics != nil {
		s.metrics = cfg.Metrics.Handler(cfg.MetricsToken)
		e := cfg.Engine
		_ = cfg.Metrics.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "maskpredictor_http_batch_names_in_flight",
			Help: "Names of /predict_batch (and /invoke batch) requests being worked now (bounded by --batch-names).",
		}, func() float64 { return float64(e.BatchNamesInFlight()) })) // a second server on the same Metrics keeps the first's
	}
	return s, nil
}

// Engine is the server's engine.
func (s *Server) Engine() *Engine { return s.cfg.Engine }

// route names, the label values of the request metrics
const (
	routeHealth  = "/health"
	routePredict = "/predict"
	routeBatch   = "/predict_batch"
	routeInvoke  = "/invoke"
	routeMetrics = "/metrics"
	routeAdmin   = "/admin/"
	routeOther   = "other"
)

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	path := r.URL.Path
	var route string
	var code int
	switch path {
	case routePredict:
		route = routePredict
		code = s.post(w, r, s.handlePredict)
	case routeBatch:
		route = routeBatch
		if r.Method == http.MethodPost && s.cfg.Engine.BatchBusy() {
			// No room even to wait: answer before reading the body.
			w.Header().Set("Connection", "close")
			code = s.busy(w, &BusyError{RetryAfter: time.Second})
			if m := s.cfg.Metrics; m != nil {
				m.batchBusy.Inc()
			}
			break
		}
		code = s.post(w, r, s.handleBatch)
	case routeInvoke:
		route = routeInvoke
		code = s.post(w, r, s.handleInvoke)
	case routeHealth:
		route = routeHealth
		code = s.get(w, r, s.handleHealth)
	case routeMetrics:
		route = routeMetrics
		if s.metrics == nil {
			code = WriteError(w, http.StatusNotFound, "not found")
			break
		}
		code = s.get(w, r, func(w http.ResponseWriter, r *http.Request) int {
			sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
			s.metrics.ServeHTTP(sw, r) // answers 401 itself on a wrong token
			return sw.code
		})
	case "/admin":
		route = routeAdmin
		if s.cfg.Admin == nil {
			code = WriteError(w, http.StatusNotFound, "not found")
			break
		}
		http.Redirect(w, r, "/admin/", http.StatusMovedPermanently)
		code = http.StatusMovedPermanently
	default:
		if strings.HasPrefix(path, routeAdmin) {
			route = routeAdmin
			if s.cfg.Admin == nil {
				code = WriteError(w, http.StatusNotFound, "not found")
				break
			}
			sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
			s.cfg.Admin.ServeHTTP(sw, r)
			code = sw.code
			break
		}
		route = routeOther
		code = WriteError(w, http.StatusNotFound, "not found")
	}
	d := time.Since(start)
	if m := s.cfg.Metrics; m != nil {
		m.observeRequest(route, code, d)
	}
	level := zapcore.DebugLevel
	if code >= 500 {
		level = zapcore.ErrorLevel
	}
	if ce := s.log.Check(level, "http request"); ce != nil {
		ce.Write(zap.String("method", r.Method), zap.String("path", path), zap.Int("status", code),
			zap.Duration("duration", d), zap.String("remote", r.RemoteAddr))
	}
}

// statusWriter remembers the status code an inner handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (sw *statusWriter) WriteHeader(code int) {
	if !sw.wrote {
		sw.code, sw.wrote = code, true
	}
	sw.ResponseWriter.WriteHeader(code)
}

func (sw *statusWriter) Write(b []byte) (int, error) {
	sw.wrote = true
	n, err := sw.ResponseWriter.Write(b)
	if err != nil {
		return n, fmt.Errorf("writing response: %w", err)
	}
	return n, nil
}

// Unwrap lets http.ResponseController reach the connection.
func (sw *statusWriter) Unwrap() http.ResponseWriter { return sw.ResponseWriter }

// Flush passes flushes through (asynqmon streams nothing, but be safe).
func (sw *statusWriter) Flush() {
	if f, ok := sw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// WriteError writes {"error": msg} with code and returns code.
func WriteError(w http.ResponseWriter, code int, msg string) int {
	return writeJSON(w, code, appendError(make([]byte, 0, 32+len(msg)), msg, -1))
}

func writeJSON(w http.ResponseWriter, code int, body []byte) int {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = w.Write(body) // the client went away: nothing to do
	return code
}

// writeJSON is the package's writeJSON without its allocations: the
// Content-Type value is shared, and net/http adds the Content-Length of a
// small body itself.
func (s *Server) writeJSON(w http.ResponseWriter, code int, body []byte) int {
	h := w.Header()
	h["Content-Type"] = s.ctJSON
	if len(body) > 2000 {
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	w.WriteHeader(code)
	_, _ = w.Write(body) // the client went away: nothing to do
	return code
}

// bodyHandler handles a request whose body was read into body.
// out is a reusable buffer for the answer (its capacity is kept).
type bodyHandler func(ctx context.Context, w http.ResponseWriter, body []byte, out *[]byte) int

// post reads the body of a POST (413 when too large) and calls h.
func (s *Server) post(w http.ResponseWriter, r *http.Request, h bodyHandler) int {
	if r.Method != http.MethodPost {
		w.Header()["Allow"] = s.allowP
		return WriteError(w, http.StatusMethodNotAllowed, "method not allowed: use POST")
	}
	max := s.cfg.MaxBodyBytes
	if r.ContentLength > max {
		return s.tooLarge(w)
	}
	buf := s.bufs.Get().(*bytes.Buffer)
	defer s.putBuf(buf)
	buf.Reset()
	n, err := buf.ReadFrom(io.LimitReader(r.Body, max+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return s.tooLarge(w)
		}
		return WriteError(w, http.StatusBadRequest, "could not read the request body")
	}
	if n > max {
		return s.tooLarge(w)
	}
	out := s.outs.Get().(*[]byte)
	code := h(r.Context(), w, buf.Bytes(), out)
	if cap(*out) <= maxPooledAnswer {
		*out = (*out)[:0]
		s.outs.Put(out)
	}
	return code
}

// maxPooledAnswer is the largest answer buffer kept for reuse: a full batch
// of long names (1,000 × ~7.6 KB) fits, so a batch flood does not allocate
// a new ~10 MB buffer per request (the GC cost other requests share).
const maxPooledAnswer = 16 << 20

func (s *Server) putBuf(b *bytes.Buffer) {
	if b.Cap() <= 4*DefaultMaxBodyBytes {
		s.bufs.Put(b)
	}
}

func (s *Server) tooLarge(w http.ResponseWriter) int {
	// The rest of the body is not read: close the connection after this.
	w.Header().Set("Connection", "close")
	return WriteError(w, http.StatusRequestEntityTooLarge,
		fmt.Sprintf("request body too large (limit %d bytes)", s.cfg.MaxBodyBytes))
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, h func(http.ResponseWriter, *http.Request) int) int {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = s.allowG
		return WriteError(w, http.StatusMethodNotAllowed, "method not allowed: use GET")
	}
	return h(w, r)
}

// Error messages of the Flask service, kept for its callers.
const (
	msgNameRequired  = "mask_name required"
	msgNamesRequired = "mask_names array required"
	msgInvalidJSON   = "request body is not valid JSON"
)

// decodeObject decodes a request body that must be a JSON object into v.
// missing is the message for a body that is empty, null or not an object
// (Flask answered those with the "… required" error).
func decodeObject(body []byte, v any, missing string) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return &InputError{Msg: missing, Index: -1}
	}
	if err := json.Unmarshal(body, v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return &InputError{Msg: msgInvalidJSON, Index: -1, Err: err}
		}
		return &InputError{Msg: missing, Index: -1, Err: err}
	}
	return nil
}

func (s *Server) writeErr(w http.ResponseWriter, err error) int {
	var ie *InputError
	if errors.As(err, &ie) {
		b := appendError(make([]byte, 0, 64+len(ie.Msg)), ie.Msg, ie.Index)
		return writeJSON(w, http.StatusBadRequest, b)
	}
	var be *BusyError
	if errors.As(err, &be) {
		return s.busy(w, be)
	}
	if gone(err) {
		return s.gone(w, err)
	}
	s.log.Error("prediction failed", zap.Error(err))
	return WriteError(w, http.StatusInternalServerError, "internal error")
}

// gone reports whether err is the request's context ending: the client
// went away (or the server is shutting down) while its batch was worked.
func gone(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// gone answers a request whose client has left: nobody reads the answer;
// it is logged at Debug, not as a failure.
func (s *Server) gone(w http.ResponseWriter, err error) int {
	s.log.Debug("request abandoned by its client", zap.Error(err))
	return WriteError(w, http.StatusServiceUnavailable, "request canceled")
}

// busy answers 503 with Retry-After (whole seconds, at least 1).
func (s *Server) busy(w http.ResponseWriter, be *BusyError) int {
	secs := max(1, int((be.RetryAfter+time.Second-1)/time.Second))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return WriteError(w, http.StatusServiceUnavailable,
		fmt.Sprintf("server busy: too many batch names in flight; retry after %d s", secs))
}

func (s *Server) handlePredict(ctx context.Context, w http.ResponseWriter, body []byte, out *[]byte) int {
	if name, ok := fastField(body, "mask_name"); ok {
		return s.answer(ctx, w, name, out)
	}
	var req struct {
		MaskName json.RawMessage `json:"mask_name"`
	}
	if err := decodeObject(body, &req, msgNameRequired); err != nil {
		return s.writeErr(w, err)
	}
	if len(req.MaskName) == 0 || string(req.MaskName) == "null" { // Flask: data.get('mask_name') is None
		return WriteError(w, http.StatusBadRequest, msgNameRequired)
	}
	name, err := decodeName(req.MaskName)
	if err != nil {
		return s.writeErr(w, err)
	}
	return s.answer(ctx, w, name, out)
}

func (s *Server) answer(ctx context.Context, w http.ResponseWriter, name string, out *[]byte) int {
	p, err := s.cfg.Engine.Predict(ctx, name)
	if err != nil {
		return s.writeErr(w, err)
	}
	*out = p.AppendJSON((*out)[:0])
	return s.writeJSON(w, http.StatusOK, *out)
}

func (s *Server) handleBatch(ctx context.Context, w http.ResponseWriter, body []byte, out *[]byte) int {
	var req struct {
		MaskNames json.RawMessage `json:"mask_names"`
	}
	if err := decodeObject(body, &req, msgNamesRequired); err != nil {
		return s.writeErr(w, err)
	}
	var names []string
	if err := decodeStrings(req.MaskNames, &names); err != nil {
		var ie *InputError
		if errors.As(err, &ie) {
			return s.writeErr(w, err)
		}
		return WriteError(w, http.StatusBadRequest, msgNamesRequired)
	}
	preds, err := s.cfg.Engine.PredictBatch(ctx, names)
	if err != nil {
		return s.writeErr(w, err)
	}
	*out = appendBatch((*out)[:0], preds)
	return s.writeJSON(w, http.StatusOK, *out)
}

// handleInvoke answers a Lambda event with the Lambda's envelope. Like
// Lambda's Invoke API, the HTTP status is 200 whenever the function ran;
// the envelope's statusCode is the function's answer (200, 400, 500).
func (s *Server) handleInvoke(ctx context.Context, w http.ResponseWriter, body []byte, out *[]byte) int {
	resp, err := s.cfg.Engine.Invoke(ctx, body)
	var be *BusyError
	if errors.As(err, &be) { // like Lambda's throttling: an HTTP answer, not the function's
		return s.busy(w, be)
	}
	if gone(err) {
		return s.gone(w, err)
	}
	if err != nil {
		s.log.Error("invoke failed", zap.Error(err))
	}
	b := bytes.NewBuffer((*out)[:0])
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(resp); err != nil {
		s.log.Error("encoding the invoke response", zap.Error(err))
		return WriteError(w, http.StatusInternalServerError, "internal error")
	}
	*out = b.Bytes()
	return writeJSON(w, http.StatusOK, bytes.TrimSuffix(*out, []byte("\n")))
}

// Health is the /health answer. The first two fields are the Flask
// service's; the others were added. /health needs no credentials, so
// nothing in it names a host, a port, a bucket, a key, a path or a
// credential: ModelSource, FallbackReason and RedisError are generic
// (PublicSource, PublicFallbackReason, PublicRedisError); the details are
// logged and shown on the authenticated /admin/ page.
type Health struct {
	Status         string `json:"status"` // "ok" or "degraded"
	ModelLoaded    bool   `json:"model_loaded"`
	ModelVersion   string `json:"model_version"`
	ModelSource    string `json:"model_source"`
	Fallback       bool   `json:"fallback"`
	FallbackReason string `json:"fallback_reason,omitempty"`
	Redis          string `json:"redis"` // "ok", "unreachable" or "disabled"
	RedisError     string `json:"redis_error,omitempty"`
	// RedisPrimary names the primary this process writes to without its
	// address: the first 12 hex digits of its replication ID
	// (Replication.PrimaryID). Processes showing the same one share a
	// primary; a Sentinel failover changes it. RedisRole is what the node
	// answering says it is: "master", or "slave" (then status is degraded:
	// writes will fail with READONLY). Both absent when Redis does not
	// answer INFO (an ACL without it).
	RedisPrimary string `json:"redis_primary,omitempty"`
	RedisRole    string `json:"redis_role,omitempty"`
	// Worker is the in-process worker's view of Redis (run only): "ok" or
	// "degraded", with WorkerError the generic reason ("out of memory
	// (OOM)", "authentication failed (WRONGPASS)").
	Worker      string `json:"worker,omitempty"`
	WorkerError string `json:"worker_error,omitempty"`
}

// CheckHealth reports the model and pings Redis. The status is "degraded"
// when the rule fallback answers or Redis is configured but unreachable:
// the API still answers (200), but not as it should.
func (s *Server) CheckHealth(ctx context.Context) Health {
	st := s.cfg.Status()
	h := Health{
		Status: "ok", ModelLoaded: st.ModelLoaded, ModelVersion: st.ModelVersion,
		ModelSource: PublicSource(st.ModelSource), Fallback: !st.ModelLoaded,
		FallbackReason: PublicFallbackReason(st.FallbackReason),
		Redis:          "disabled",
	}
	if !st.ModelLoaded {
		h.Status = "degraded"
	}
	if s.cfg.Redis != nil {
		pctx, cancel := context.WithTimeout(ctx, s.cfg.HealthTimeout)
		// within: a Redis that hangs must not hold /health past HealthTimeout.
		info, err := within(pctx, func() (string, error) {
			var ping *redis.StatusCmd
			var info *redis.StringCmd
			_, err := s.cfg.Redis.Pipelined(pctx, func(p redis.Pipeliner) error {
				ping = p.Ping(pctx)
				info = p.Info(pctx, "replication")
				return nil
			})
			var reply redis.Error
			if err != nil && ping.Err() == nil && errors.As(info.Err(), &reply) {
				return "", nil // INFO refused alone (an ACL): only the primary is left out
			}
			return info.Val(), err
		})
		cancel()
		if err == nil {
			if r := ParseReplication(info); r.Role != "" {
				h.RedisPrimary, h.RedisRole = r.PrimaryID(), r.Role
			}
		}
		if err == nil && h.RedisRole != "" && h.RedisRole != "master" {
			h.Redis, h.RedisError, h.Status = "ok", "redis: connected to a replica (read-only)", "degraded"
			s.health.redisFailed(s.log, h.RedisError, errors.New("INFO replication says role:"+h.RedisRole))
		} else if err != nil {
			h.Redis, h.RedisError, h.Status = "unreachable", PublicRedisError(err), "degraded"
			s.health.redisFailed(s.log, h.RedisError, err)
		} else {
			h.Redis = "ok"
			s.health.redisOK(s.log)
		}
	}
	if s.cfg.Worker != nil {
		h.Worker = "ok"
		switch ws := s.cfg.Worker(); {
		case ws.RedisDegraded != "":
			h.Worker, h.WorkerError, h.Status = "degraded", ws.RedisDegraded, "degraded"
		case ws.ReplicasShort:
			h.Worker, h.WorkerError, h.Status = "degraded", "write-backs waiting for replicas (REDIS_WAIT_REPLICAS): jobs are not done", "degraded"
		}
	}
	return h
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) int {
	b, err := json.Marshal(s.CheckHealth(r.Context()))
	if err != nil {
		return WriteError(w, http.StatusInternalServerError, "internal error")
	}
	return writeJSON(w, http.StatusOK, b)
}
