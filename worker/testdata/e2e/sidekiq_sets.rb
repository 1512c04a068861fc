# What Sidekiq Web's Retries and Dead pages, its buttons and its dashboard do, through
# Sidekiq's own API (Debian's 6.4.1, or 7.3 with RUBYLIB set), printing JSON:
#
#   REDIS_URL=... ruby sidekiq_sets.rb push JID NAME [RETRY]  Sidekiq::Client.push of a MaskPredictionJob
#   REDIS_URL=... ruby sidekiq_sets.rb push_many JSON  [[JID, NAME, RETRY or null], …] in one process
#   REDIS_URL=... ruby sidekiq_sets.rb sets            the retry and dead sets, Sidekiq::Stats
#   REDIS_URL=... ruby sidekiq_sets.rb retry_now JID   "Retry Now" on a retry entry
#   REDIS_URL=... ruby sidekiq_sets.rb kill JID        "Kill" on a retry entry
#   REDIS_URL=... ruby sidekiq_sets.rb delete JID      "Delete" on a retry entry
#   REDIS_URL=... ruby sidekiq_sets.rb buttons JSON    [[BUTTON, JID], …] of the three above, in one process
#   REDIS_URL=... ruby sidekiq_sets.rb retry_all_dead  "Retry All" on the Dead page, counted and timed
#   REDIS_URL=... ruby sidekiq_sets.rb metrics CLASS   Sidekiq 7's Metrics::Query (the Metrics tab)
require "json"
out = $stdout
$stdout = $stderr # Sidekiq 7 logs to stdout; the JSON answer goes to the real one
require "sidekiq"
require "sidekiq/api"

Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL"), size: 2 } }

def entry(r)
  { "jid" => r.jid, "class" => r.klass, "display_class" => r.display_class, "queue" => r.queue,
    "at" => r.at.to_f, "args" => r.args, "retry_count" => r.item["retry_count"],
    "error_class" => r.item["error_class"], "error_message" => r.item["error_message"],
    "failed_at" => r.item["failed_at"], "retried_at" => r.item["retried_at"] }
end

case ARGV.fetch(0)
when "push"
  retry_opt = ARGV[3] ? Integer(ARGV[3]) : true
  Sidekiq::Client.push("class" => "MaskPredictionJob", "queue" => "mask_predictions", "jid" => ARGV.fetch(1),
                       "args" => [ARGV.fetch(2)], "retry" => retry_opt)
  out.puts "{}"
when "push_many"
  JSON.parse(ARGV.fetch(1)).each do |jid, name, retry_opt|
    Sidekiq::Client.push("class" => "MaskPredictionJob", "queue" => "mask_predictions", "jid" => jid,
                         "args" => [name], "retry" => retry_opt.nil? ? true : retry_opt)
  end
  out.puts "{}"
when "sets"
  s = Sidekiq::Stats.new
  out.puts JSON.generate("version" => Sidekiq::VERSION,
                     "retry" => Sidekiq::RetrySet.new.map { |r| entry(r) },
                     "dead" => Sidekiq::DeadSet.new.map { |r| entry(r) },
                     "stats" => { "processed" => s.processed, "failed" => s.failed,
                                  "retry_size" => s.retry_size, "dead_size" => s.dead_size })
when "retry_now", "kill", "delete", "buttons"
  ops = ARGV[0] == "buttons" ? JSON.parse(ARGV.fetch(1)) : [[ARGV[0], ARGV.fetch(1)]]
  ops.each do |button, jid|
    job = Sidekiq::RetrySet.new.find_job(jid) or abort "no retry entry #{jid}"
    job.public_send(button == "retry_now" ? :retry : button.to_sym)
  end
  out.puts "{}"
when "retry_all_dead"
  # retry_all retries every entry "while size > 0": the entries it retried
  # tell whether a job came back to the dead set meanwhile (more than size).
  $retries = 0
  Sidekiq::SortedEntry.prepend(Module.new do
    def retry
      $retries += 1
      super
    end
  end)
  size = Sidekiq::DeadSet.new.size
  t = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  Sidekiq::DeadSet.new.retry_all
  out.puts JSON.generate("version" => Sidekiq::VERSION, "size" => size, "retries" => $retries,
                     "seconds" => Process.clock_gettime(Process::CLOCK_MONOTONIC) - t)
when "metrics"
  require "sidekiq/metrics/query"
  klass = ARGV.fetch(1)
  q = Sidekiq::Metrics::Query.new
  job = q.for_job(klass, minutes: 10).job_results[klass]
  top = q.top_jobs(minutes: 10).job_results.transform_values(&:totals)
  hist = job.hist.values.each_with_object(Array.new(26, 0)) { |h, sum| h.each_with_index { |n, i| sum[i] += n } }
  out.puts JSON.generate("version" => Sidekiq::VERSION, "totals" => job.totals, "hist" => hist.reverse,
                     "avg_ms" => job.total_avg("ms"), "top" => top)
else
  abort "unknown command #{ARGV[0]}"
end
