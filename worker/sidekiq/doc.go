// Package sidekiq owns everything that is in Sidekiq's Redis format, so that the rest of
// the sidecar deals with asynq tasks only:
//
//   - ParseJob / Job.Requests read the job payloads Rails pushes: Sidekiq 6 and 7 (float
//     epoch-second timestamps) and 8 (integer milliseconds), plain jobs and ActiveJob's
//     wrapper under both class names, every args form of the design. What can never succeed
//     is an error wrapping ErrPoison.
//   - Bridge moves jobs from queue:<name> into asynq without loss or duplication
//     (reference §9): an atomic move into a per-process in-flight list, Enqueue under a
//     TaskID derived from the delivery (Job.TaskID) with Retention, removal from the list;
//     in-flight lists of processes whose alive key expired are recovered at start and
//     periodically; backpressure keeps the backlog in queue:<name>; poison goes to the dead
//     set. Its keys are <prefix>:bridges, :alive:<id>, :queues:<id>, :inflight:<id>:<queue>.
//   - Client writes what Ruby's Sidekiq reads: jobs (Push, for callbacks to Rails); failed
//     jobs where a Ruby server's JobRetry puts them (Fail: retry set with retry_count,
//     error fields and Sidekiq's backoff, or the dead set, each once per delivery
//     marker, MarkerKey, counted in stat:failed); the bridge's poison (Dead); the stat
//     counters (IncrStats); the Metrics tab's execution counts and histograms (Metrics,
//     RecordMetrics). Backoff is Sidekiq's retry delay.
//   - Heartbeat keeps the process on Sidekiq Web's Busy page with its running jobs.
//   - Scheduler moves due schedule/retry entries of our queues to their queue, so that
//     perform_in works without a Ruby Sidekiq server, and stays correct next to one.
//
// Composition (worker.Server does it): one identity for Bridge and Heartbeat; the asynq
// server with Queues = AsynqQueues(queues), RetryDelayFunc = RetryDelay (used only when a
// failure cannot even be recorded in Sidekiq's sets) and a short
// TaskCheckInterval (asynq's processor sleeps TaskCheckInterval/2 to 3/2 whenever it finds
// its pending list empty, and the bridge keeps only MaxPending tasks there). Start the
// Bridge, Heartbeat and Scheduler with Start(ctx), which return at once; on shutdown stop
// the Scheduler, then the Bridge (it stops fetching and hands what it holds to asynq), then
// the asynq server, then the Heartbeat.
//
// The tests run against a real redis-server (started by the tests, or TEST_REDIS_URL) and,
// where Ruby and Debian's ruby-sidekiq are installed, against the real Sidekiq client and
// API: see testdata/ruby and testdata/payloads.
package sidekiq
