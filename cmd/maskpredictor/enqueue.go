package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/maskpredictor/maskpredictor/worker/sidekiq"
)

// runEnqueue is `maskpredictor enqueue NAME…`: push prediction jobs the
// way Rails does (Sidekiq::Client.push) and print their jids; with --wait,
// wait for each reply (reply_to) and print the predictions instead.
func runEnqueue(ctx context.Context, args []string, sys IO) error {
	fs := newFlagSet("enqueue", sys)
	var rf redisFlags
	rf.register(fs)
	queue := fs.String("queue", "", "Sidekiq queue to push to (default: the first of $WORKER_QUEUES, else "+sidekiq.DefaultQueue+")")
	class := fs.String("class", "MaskPredictionJob", "Sidekiq job class written in the payload")
	wait := fs.Bool("wait", false, "wait for the predictions (via reply_to) and print them, one JSON per line")
	timeout := fs.Duration("timeout", 30*time.Second, "with --wait: how long to wait for all replies")
	batch := fs.Bool("batch", false, `push all names as one job ({"mask_names": […]})`)
	retry := fs.Int("retry", -1, "Sidekiq retry count for the jobs (-1: Sidekiq's default, 25)")
	names, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return fmt.Errorf("%w: no mask names given", errUsage)
	}
	if *queue == "" {
		// The worker's queue list may carry weights ("a:3,b:1"): push to
		// the first queue's name, which the worker reads.
		qs, err := sidekiq.ParseQueues(envString(sys, "WORKER_QUEUES", sidekiq.DefaultQueue))
		if err != nil {
			return fmt.Errorf("%w: WORKER_QUEUES: %v", errUsage, err)
		}
		*queue = qs[0].Name
	}
	if q, err := sidekiq.ParseQueues(*queue); err != nil || len(q) != 1 || q[0].Name != *queue {
		return fmt.Errorf("%w: --queue %q: want one queue name", errUsage, *queue)
	}
	log := logger(sys)
	defer log.Sync() //nolint:errcheck // stderr
	rc, err := rf.config(sys, log)
	if err != nil {
		return err
	}
	rdb := rc.client(4)
	defer rdb.Close()
	client := sidekiq.NewClient(rdb)
	var opts []sidekiq.PushOption
	if *retry >= 0 {
		opts = append(opts, sidekiq.WithRetry(*retry))
	}

	type pending struct {
		jid, replyTo string
		n            int // replies expected
	}
	var jobs []pending
	push := func(arg any, replyTo string, n int) error {
		jid, err := client.Push(ctx, *queue, *class, []any{arg}, opts...)
		if err != nil {
			return err
		}
		jobs = append(jobs, pending{jid: jid, replyTo: replyTo, n: n})
		return nil
	}
	replyKey := func() string { return sidekiq.ReplyPrefix + sidekiq.NewJID() }
	switch {
	case *batch:
		arg := map[string]any{"mask_names": names}
		key := ""
		if *wait {
			key = replyKey()
			arg["reply_to"] = key
		}
		err = push(arg, key, len(names))
	default:
		for _, n := range names {
			var arg any = n
			key := ""
			if *wait {
				key = replyKey()
				arg = map[string]any{"mask_name": n, "reply_to": key}
			}
			if err = push(arg, key, 1); err != nil {
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	out := bufio.NewWriter(sys.Stdout)
	defer out.Flush()
	if !*wait {
		for _, j := range jobs {
			fmt.Fprintln(out, j.jid)
		}
		return out.Flush()
	}
	for _, j := range jobs {
		fmt.Fprintf(sys.Stderr, "enqueued jid %s on queue:%s\n", j.jid, *queue)
	}
	deadline := time.Now().Add(*timeout)
	for _, j := range jobs {
		for i := 0; i < j.n; i++ {
			left := time.Until(deadline)
			if left <= 0 {
				return fmt.Errorf("enqueue --wait: no reply for jid %s within %v (is a worker running on queue %q?)", j.jid, *timeout, *queue)
			}
			res, err := rdb.BLPop(ctx, max(left, time.Second), j.replyTo).Result()
			if errors.Is(err, redis.Nil) {
				return fmt.Errorf("enqueue --wait: no reply for jid %s within %v (is a worker running on queue %q?)", j.jid, *timeout, *queue)
			}
			if err != nil {
				return fmt.Errorf("enqueue --wait: %w", err)
			}
			if !json.Valid([]byte(res[1])) {
				return fmt.Errorf("enqueue --wait: reply for jid %s is not JSON: %q", j.jid, res[1])
			}
			fmt.Fprintln(out, res[1])
		}
		rdb.Del(ctx, j.replyTo)
	}
	return out.Flush()
}
