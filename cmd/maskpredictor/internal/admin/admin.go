// Package admin is maskpredictor's operator dashboard, mounted at /admin/
// only when credentials are configured: an overview page of its own
// (server-rendered, no JavaScript) and asynqmon under /admin/queues/.
//
// asynqmon has no authentication, exposes Redis INFO and, unless read-only,
// deletes, runs and archives tasks. Every path under /admin/ therefore goes
// through the same check: HTTP Basic (ADMIN_USER/ADMIN_PASSWORD) or a bearer
// token (ADMIN_TOKEN, also accepted as the Basic password so that a browser
// can log in), compared in constant time; and unsafe methods must come from
// the same origin (CSRF: a browser resends Basic credentials by itself).
package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/httpapi"
)

// Prefix is where the dashboard is mounted; asynqmon is under QueuesPath.
const (
	Prefix     = "/admin/"
	QueuesPath = "/admin/queues"
)

// Config configures the dashboard.
type Config struct {
	// User and Password enable HTTP Basic; Token enables a bearer token.
	// At least one must be configured, and User and Password go together.
	User, Password, Token string
	// ReadOnly puts asynqmon in its read-only mode (only GETs to its API).
	ReadOnly bool

	// Status reports the serving model. Required.
	Status httpapi.StatusFunc
	// Metrics gives the cache hit ratio (optional).
	Metrics *httpapi.Metrics
	// Recent gives the lowest-confidence recent predictions (optional).
	Recent *httpapi.Recent
	// Redis is read for the queues, the dead set and the cache (optional:
	// without it the page says Redis is not configured).
	Redis redis.UniversalClient
	// RedisOptions, when set, mounts asynqmon, which opens two connection
	// pools of its own with these options.
	RedisOptions *redis.Options
	// Queues are the Sidekiq ingress queues shown (default mask_predictions).
	Queues []string
	// CachePrefix is the cache's key prefix (default cache.KeyPrefix).
	CachePrefix string
	// Timeout bounds the Redis reads of one page. Default 3 s.
	Timeout time.Duration
	// Logger gets refused logins (Debug) and page errors. Default: no-op.
	Logger *zap.Logger
}

// Configured reports whether any credentials are set: without them the
// dashboard is not mounted at all.
func Configured(user, password, token string) bool {
	return user != "" || password != "" || token != ""
}

// Handler serves /admin/. Close releases asynqmon's Redis pools.
type Handler struct {
	cfg     Config
	log     *zap.Logger
	user    *[sha256.Size]byte
	pass    *[sha256.Size]byte
	token   *[sha256.Size]byte
	queues  http.Handler // asynqmon behind CSRF protection; nil without Redis
	monitor *asynqmon.HTTPHandler
	page    *overviewRenderer
}

// New returns the dashboard for cfg.
func New(cfg Config) (*Handler, error) {
	switch {
	case !Configured(cfg.User, cfg.Password, cfg.Token):
		return nil, errors.New("admin: no credentials configured (ADMIN_USER/ADMIN_PASSWORD or ADMIN_TOKEN)")
	case (cfg.User == "") != (cfg.Password == ""):
		return nil, errors.New("admin: ADMIN_USER and ADMIN_PASSWORD must be set together")
	case cfg.Status == nil:
		return nil, errors.New("admin: Config.Status is required")
	}
	if len(cfg.Queues) == 0 {
		cfg.Queues = []string{"mask_predictions"}
	}
	if cfg.CachePrefix == "" {
		cfg.CachePrefix = "maskpredictor:prediction:"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 3 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	h := &Handler{cfg: cfg, log: cfg.Logger}
	if cfg.User != "" {
		u, p := sha256.Sum256([]byte(cfg.User)), sha256.Sum256([]byte(cfg.Password))
		h.user, h.pass = &u, &p
	}
	if cfg.Token != "" {
		t := sha256.Sum256([]byte(cfg.Token))
		h.token = &t
	}
	page, err := newOverviewRenderer()
	if err != nil {
		return nil, err
	}
	h.page = page
	if cfg.RedisOptions != nil {
		h.monitor = asynqmon.New(asynqmon.Options{
			RootPath:     QueuesPath,
			RedisConnOpt: connOpt{cfg.RedisOptions},
			ReadOnly:     cfg.ReadOnly,
		})
		h.queues = http.NewCrossOriginProtection().Handler(h.monitor)
	}
	return h, nil
}

// Close releases asynqmon's connection pools.
func (h *Handler) Close() error {
	if h.monitor != nil {
		if err := h.monitor.Close(); err != nil {
			return fmt.Errorf("closing asynqmon: %w", err)
		}
	}
	return nil
}

// connOpt gives asynqmon (and its asynq.Inspector) clients with our Redis
// options, TLS settings included.
type connOpt struct{ opt *redis.Options }

func (c connOpt) MakeRedisClient() any {
	o := *c.opt
	o.PoolSize = 4
	return redis.NewClient(&o)
}

func equal(got string, want *[sha256.Size]byte) bool {
	if want == nil {
		return false
	}
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], want[:]) == 1
}

// authorized checks the request's credentials in constant time.
func (h *Handler) authorized(r *http.Request) bool {
	if tok, ok := httpapi.BearerToken(r); ok {
		return equal(tok, h.token)
	}
	u, p, ok := r.BasicAuth()
	if !ok {
		return false
	}
	userOK := equal(u, h.user)
	passOK := equal(p, h.pass)
	tokenOK := equal(p, h.token)
	return userOK && passOK || tokenOK
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	if !h.authorized(r) {
		if _, _, ok := r.BasicAuth(); ok || r.Header.Get("Authorization") != "" {
			h.log.Debug("admin: credentials refused", zap.String("remote", r.RemoteAddr), zap.String("path", r.URL.Path))
		}
		hd.Set("WWW-Authenticate", `Basic realm="maskpredictor admin", charset="UTF-8"`)
		httpapi.WriteError(w, http.StatusUnauthorized, "unauthorized")
		return
	}
	switch p := r.URL.Path; {
	case p == Prefix:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			hd.Set("Allow", "GET, HEAD")
			httpapi.WriteError(w, http.StatusMethodNotAllowed, "method not allowed: use GET")
			return
		}
		h.serveOverview(w, r)
	case p == QueuesPath:
		if h.queues == nil {
			httpapi.WriteError(w, http.StatusNotFound, "asynqmon needs Redis: not configured")
			return
		}
		http.Redirect(w, r, QueuesPath+"/", http.StatusMovedPermanently)
	case strings.HasPrefix(p, QueuesPath+"/"):
		if h.queues == nil {
			httpapi.WriteError(w, http.StatusNotFound, "asynqmon needs Redis: not configured")
			return
		}
		h.queues.ServeHTTP(w, r)
	default:
		httpapi.WriteError(w, http.StatusNotFound, "not found")
	}
}

func (h *Handler) serveOverview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Timeout)
	defer cancel()
	ov := h.collect(ctx)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	if err := h.page.render(w, ov); err != nil {
		h.log.Warn("admin: rendering the overview", zap.Error(err))
	}
}
