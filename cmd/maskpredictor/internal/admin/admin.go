// Package admin is maskpredictor's operator dashboard, mounted at /admin/
// only when credentials are configured: an overview page of its own
// (server-rendered, no JavaScript), the review page where a person labels
// the names the model is least sure of (/admin/review, with one small
// inline script), its JSON API under /admin/api/ (docs/review.md), and
// asynqmon under /admin/queues/.
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
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/maskpredictor/maskpredictor/cmd/maskpredictor/internal/httpapi"
	"github.com/maskpredictor/maskpredictor/labels"
	"github.com/maskpredictor/maskpredictor/predictor"
)

// Prefix is where the dashboard is mounted; asynqmon is under QueuesPath,
// the review page at ReviewPath and its JSON API under APIPrefix.
const (
	Prefix     = "/admin/"
	QueuesPath = "/admin/queues"
	ReviewPath = "/admin/review"
	APIPrefix  = "/admin/api/"
)

// Config configures the dashboard.
type Config struct {
	// User and Password enable HTTP Basic; Token enables a bearer token.
	// At least one must be configured, and User and Password go together.
	User, Password, Token string
	// ReadOnly puts asynqmon in its read-only mode (only GETs to its API),
	// refuses the label API's PUT, DELETE and POST (403) and shows the
	// review page without Save.
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
	// NewRedis, when set, mounts asynqmon with clients it returns (the
	// process's one Redis configuration: a Sentinel failover client too);
	// it wins over RedisOptions.
	NewRedis func(poolSize int) redis.UniversalClient
	// RedisPrimary, when set, names the data node this process writes to
	// (host:port), and RedisMode where it comes from (the URL's source, or
	// the sentinels and master name); the overview shows both.
	RedisPrimary func() string
	RedisMode    string
	// Queues are the Sidekiq ingress queues shown (default mask_predictions).
	Queues []string
	// CachePrefix is the cache's key prefix (default cache.KeyPrefix).
	CachePrefix string
	// Labels is the label store behind /admin/review and /admin/api/
	// (nil without Redis: they answer 503).
	Labels *labels.Store
	// CRF returns the model serving now, nil while the rule fallback
	// answers. The review queue and re-decoding predict with it on every
	// request, so they follow a hot reload.
	CRF func() *predictor.CRF
	// Forget, when set, is told the normalized name of every label stored
	// or deleted through the dashboard, so that the process's own
	// in-memory answers (the HTTP engine's memo) follow at once instead of
	// after their TTL.
	Forget func(normalized string)
	// ReviewMaxKeys caps the cache keys one review computation scans
	// (default 5,000); ReviewBudget bounds its time (default 1 s).
	ReviewMaxKeys int
	ReviewBudget  time.Duration
	// Timeout bounds the Redis reads of one page. Default 3 s.
	Timeout time.Duration
	// MaxFailures is how many refused logins one client may have within
	// FailureWindow (default 1 min) of its first; after that it is answered
	// 429 with Retry-After, its credentials unchecked, until the window
	// ends. Other clients are not affected. Default 10; negative: no limit.
	MaxFailures   int
	FailureWindow time.Duration
	// ClientIPHeader, when set, names the header whose last address is the
	// client's (e.g. X-Forwarded-For behind Heroku's router); otherwise the
	// connection's peer address is (ClientIP).
	ClientIPHeader string
	// Now is the clock of the throttle (default time.Now); tests set it.
	Now func() time.Time
	// Logger gets refused logins and throttled clients (Warn, once per
	// client and window, with the client's address, never a password) and
	// page errors. Default: no-op.
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
	review  *reviewRenderer
	api     http.Handler // the JSON API behind CSRF protection
	limit   *throttle
	queue   reviewStat // the last review queue computed
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
	if cfg.MaxFailures == 0 {
		cfg.MaxFailures = DefaultMaxFailures
	}
	if cfg.FailureWindow <= 0 {
		cfg.FailureWindow = DefaultFailureWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ReviewMaxKeys <= 0 {
		cfg.ReviewMaxKeys = DefaultReviewMaxKeys
	}
	if cfg.ReviewBudget <= 0 {
		cfg.ReviewBudget = DefaultReviewBudget
	}
	h := &Handler{cfg: cfg, log: cfg.Logger}
	limit := cfg.MaxFailures
	if limit < 0 { // no limit, but failures are still counted to bound the log
		limit = math.MaxInt
	}
	h.limit = newThrottle(limit, cfg.FailureWindow, cfg.Now)
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
	if h.review, err = newReviewRenderer(); err != nil {
		return nil, err
	}
	h.api = csrf(http.HandlerFunc(h.serveAPI))
	if cfg.RedisOptions != nil || cfg.NewRedis != nil {
		h.monitor = asynqmon.New(asynqmon.Options{
			RootPath:     QueuesPath,
			RedisConnOpt: connOpt{cfg.RedisOptions, cfg.NewRedis},
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
// options, TLS settings included, or from the process's client factory.
type connOpt struct {
	opt     *redis.Options
	factory func(poolSize int) redis.UniversalClient
}

func (c connOpt) MakeRedisClient() any {
	if c.factory != nil {
		return c.factory(4)
	}
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

// tokenUser is who a request authenticated with the token is (labelled_by).
const tokenUser = "token"

// authorized checks the request's credentials in constant time and says
// who made it: the Basic user name, or tokenUser for the token (as a
// bearer or as the Basic password, whatever user name came with it).
func (h *Handler) authorized(r *http.Request) (who string, ok bool) {
	if tok, ok := httpapi.BearerToken(r); ok {
		return tokenUser, equal(tok, h.token)
	}
	u, p, ok := r.BasicAuth()
	if !ok {
		return "", false
	}
	userOK := equal(u, h.user)
	passOK := equal(p, h.pass)
	tokenOK := equal(p, h.token)
	switch {
	case userOK && passOK:
		return u, true
	case tokenOK:
		return tokenUser, true
	}
	return "", false
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	client := ClientIP(r, h.cfg.ClientIPHeader)
	if blocked, wait := h.limit.blocked(client); blocked {
		secs := int((wait + time.Second - 1) / time.Second)
		hd.Set("Retry-After", strconv.Itoa(secs))
		if m := h.cfg.Metrics; m != nil {
			m.ObserveAdminLoginFailure(true)
		}
		httpapi.WriteError(w, http.StatusTooManyRequests, fmt.Sprintf("too many failed logins; retry after %d s", secs))
		return
	}
	who, ok := h.authorized(r)
	if !ok {
		if _, _, ok := r.BasicAuth(); ok || r.Header.Get("Authorization") != "" {
			h.refused(client, r)
		}
		hd.Set("WWW-Authenticate", `Basic realm="maskpredictor admin", charset="UTF-8"`)
		httpapi.WriteError(w, http.StatusUnauthorized, "unauthorized")
		return
	}
	h.limit.succeeded(client)
	switch p := r.URL.Path; {
	case p == Prefix:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			hd.Set("Allow", "GET, HEAD")
			httpapi.WriteError(w, http.StatusMethodNotAllowed, "method not allowed: use GET")
			return
		}
		h.serveOverview(w, r)
	case p == ReviewPath:
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			hd.Set("Allow", "GET, HEAD")
			httpapi.WriteError(w, http.StatusMethodNotAllowed, "method not allowed: use GET")
			return
		}
		h.serveReview(w, r, who)
	case strings.HasPrefix(p, APIPrefix):
		h.api.ServeHTTP(w, r.WithContext(withUser(r.Context(), who)))
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

// refused counts and logs a request whose credentials were wrong: a warning
// for the first failure of a client's window and one when it reaches the
// limit, none in between (a brute-force flood logs two lines per client
// and window, not one per attempt).
func (h *Handler) refused(client string, r *http.Request) {
	if m := h.cfg.Metrics; m != nil {
		m.ObserveAdminLoginFailure(false)
	}
	n := h.limit.fail(client)
	switch {
	case n == 1:
		h.log.Warn("admin: credentials refused", zap.String("client", client),
			zap.String("remote", r.RemoteAddr), zap.String("path", r.URL.Path))
	case n == h.cfg.MaxFailures:
		h.log.Warn("admin: client throttled after repeated failed logins", zap.String("client", client),
			zap.Int("failures", n), zap.Duration("window", h.cfg.FailureWindow))
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
