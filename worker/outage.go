package worker

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// outageHook slows every caller of a client down while Redis is
// unreachable. asynq's processor retries a failed dequeue at once, and
// go-redis fails fast once its pool has given up dialing, so without it a
// Redis outage would spin the CPU. The delay grows from 50 ms to 1 s per
// consecutive connection failure (shared by all callers) and resets at the
// first success. Errors Redis itself replied (and redis.Nil) do not count.
type outageHook struct {
	failures atomic.Int64
}

func addOutageHook(c redis.UniversalClient) *outageHook {
	h := &outageHook{}
	if c != nil {
		c.AddHook(h)
	}
	return h
}

// failing reports whether the last call through the client could not
// reach Redis.
func (h *outageHook) failing() bool { return h.failures.Load() != 0 }

const (
	outageMinDelay = 50 * time.Millisecond
	outageMaxDelay = time.Second
)

func (h *outageHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		h.after(ctx, err)
		return c, err
	}
}

func (h *outageHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.after(ctx, err)
		return err
	}
}

func (h *outageHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.after(ctx, err)
		return err
	}
}

func (h *outageHook) after(ctx context.Context, err error) {
	if !isConnError(err) {
		if err == nil && h.failures.Load() != 0 {
			h.failures.Store(0)
		}
		return
	}
	n := h.failures.Add(1)
	d := outageMinDelay << min(n-1, 10)
	d = min(d, outageMaxDelay)
	d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1)) // jitter
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// isConnError reports whether err means Redis could not be reached (as
// opposed to an answer from Redis, or the caller giving up).
func isConnError(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrClosed) {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		// An error reply; but LOADING (Redis restarting) is an outage too.
		msg := rerr.Error()
		return len(msg) >= 7 && msg[:7] == "LOADING"
	}
	return true
}
