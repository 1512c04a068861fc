package httpapi

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// PublicSource is a model source fit for the unauthenticated /health: the
// kind of source without its location ("MODEL_URI s3://bucket/key" →
// "MODEL_URI (s3)", "--model /srv/m.bin" → "--model (file)").
func PublicSource(src string) string {
	switch {
	case src == "" || src == "embedded" || src == "rules":
		return src
	case strings.HasPrefix(src, "MODEL_URI "):
		return "MODEL_URI (" + uriKind(strings.TrimPrefix(src, "MODEL_URI ")) + ")"
	case strings.HasPrefix(src, "--model "):
		return "--model (" + uriKind(strings.TrimPrefix(src, "--model ")) + ")"
	}
	return "(hidden)"
}

func uriKind(uri string) string {
	if i := strings.Index(uri, "://"); i > 0 && i < 16 && !strings.ContainsAny(uri[:i], "/@:") {
		return strings.ToLower(uri[:i])
	}
	return "file"
}

// PublicFallbackReason is a fallback reason fit for /health: "--rules
// given" as is, anything else (which names the model's location and the
// loader's error) as "model: load failed".
func PublicFallbackReason(why string) string {
	switch why {
	case "", "--rules given":
		return why
	}
	return "model: load failed (details in the logs and on /admin/)"
}

// PublicRedisError is a Redis error fit for /health: its kind, never the
// address, URL or credentials that go-redis errors may carry.
func PublicRedisError(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	var ne net.Error
	var why interface{ RedisFaultReason() string }
	switch {
	case errors.As(err, &why):
		return "redis: " + why.RedisFaultReason()
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return "redis: timeout"
	case strings.Contains(msg, "NOAUTH") || strings.Contains(msg, "WRONGPASS") ||
		strings.Contains(msg, "invalid password") || strings.Contains(msg, "invalid username-password"):
		return "redis: authentication failed"
	case strings.HasPrefix(msg, "LOADING"):
		return "redis: loading its data"
	case strings.Contains(msg, "tls:") || strings.Contains(msg, "x509:"):
		return "redis: TLS handshake failed"
	case strings.Contains(msg, "DB index is out of range") || strings.Contains(msg, "invalid DB index"):
		return "redis: bad database number"
	}
	return "redis: unreachable"
}

// healthLog logs /health's Redis failures with their details: once when
// the kind of failure changes, then at most once a minute (load balancers
// ask every few seconds).
type healthLog struct {
	mu     sync.Mutex
	last   string
	logged time.Time
}

func (h *healthLog) redisFailed(log *zap.Logger, kind string, err error) {
	h.mu.Lock()
	now := time.Now()
	emit := kind != h.last || now.Sub(h.logged) >= time.Minute
	if emit {
		h.last, h.logged = kind, now
	}
	h.mu.Unlock()
	if emit {
		log.Warn("health: Redis check failed", zap.String("reason", kind), zap.Error(err))
	}
}

func (h *healthLog) redisOK(log *zap.Logger) {
	h.mu.Lock()
	was := h.last
	h.last = ""
	h.mu.Unlock()
	if was != "" {
		log.Info("health: Redis reachable again")
	}
}

// Replication is what a Redis node says of itself in INFO replication.
type Replication struct {
	// Role is "master" or "slave" (a replica).
	Role string
	// ReplID is the node's replication ID: a primary's own, which its
	// replicas share and a promotion replaces; random, it names no address.
	ReplID string
	// Replicas is connected_slaves (a primary's).
	Replicas int
}

// PrimaryID is the first 12 hex digits of ReplID: /health's redis_primary.
// Processes that show the same one write to the same primary;
// `redis-cli INFO replication` (master_replid) on a node matches it.
func (r Replication) PrimaryID() string {
	if len(r.ReplID) < 12 {
		return r.ReplID
	}
	return r.ReplID[:12]
}

// ParseReplication reads the text of INFO replication.
func ParseReplication(info string) Replication {
	var r Replication
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch k {
		case "role":
			r.Role = v
		case "master_replid":
			r.ReplID = v
		case "connected_slaves":
			r.Replicas, _ = strconv.Atoi(v)
		}
	}
	return r
}
