# Reads what the Go side wrote through Sidekiq's own API (Debian's ruby-sidekiq 6.4.1),
# as Rails or Sidekiq's Web UI would, and prints it as JSON.
#
#   REDIS_URL=redis://127.0.0.1:6379/0 ruby read_back.rb QUEUE
require "json"
require "sidekiq"
require "sidekiq/api"

Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL") } }

queue = Sidekiq::Queue.new(ARGV[0] || "default")
out = {}
out["version"] = Sidekiq::VERSION
out["queue_size"] = queue.size
out["queue_latency"] = queue.latency
out["queue"] = queue.map do |j|
  { "jid" => j.jid, "klass" => j.klass, "args" => j.args, "display_class" => j.display_class,
    "retry" => j["retry"], "enqueued_at" => j.enqueued_at&.to_f, "created_at" => j.created_at&.to_f }
end
out["dead"] = Sidekiq::DeadSet.new.map do |e|
  { "jid" => e.jid, "klass" => e.klass, "queue" => e.queue, "args" => e.args,
    "error_class" => e["error_class"], "error_message" => e["error_message"],
    "failed_at" => e["failed_at"], "retry_count" => e["retry_count"], "at" => e.at.to_f }
end
stats = Sidekiq::Stats.new
out["stats"] = { "processed" => stats.processed, "failed" => stats.failed, "dead_size" => stats.dead_size,
                 "processes_size" => stats.processes_size, "workers_size" => stats.workers_size }
history = Sidekiq::Stats::History.new(2)
out["history"] = { "processed" => history.processed, "failed" => history.failed }
out["processes"] = Sidekiq::ProcessSet.new.map do |p|
  { "identity" => p["identity"], "busy" => p["busy"], "concurrency" => p["concurrency"],
    "queues" => p["queues"], "tag" => p["tag"], "hostname" => p["hostname"], "pid" => p["pid"],
    "beat" => p["beat"], "quiet" => p["quiet"], "started_at" => p["started_at"], "rss" => p["rss"],
    "labels" => p["labels"] }
end
out["workers"] = []
Sidekiq::Workers.new.each do |process, thread, work|
  out["workers"] << { "process" => process, "thread" => thread, "queue" => work["queue"],
                      "jid" => work["payload"]["jid"], "run_at" => work["run_at"] }
end
out["scheduled"] = Sidekiq::ScheduledSet.new.map(&:jid)
puts JSON.generate(out)
