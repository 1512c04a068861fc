# Pushes prediction jobs with the real Sidekiq client (Debian's ruby-sidekiq), the way a
# Rails app does, and prints {"label": jid, ...} as JSON.
#
#   REDIS_URL=redis://127.0.0.1:6379/0 ruby push_jobs.rb QUEUE [BULK_COUNT] [with_scheduled]
#
# Rails is not installed, so the ActiveJob payloads are built by hand in the shape
# ActiveJob's Sidekiq adapter writes (JobWrapper + "wrapped" + args[0] = job.serialize).
require "json"
require "securerandom"
require "time"
require "sidekiq"

Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL") } }

queue = ARGV[0] || "mask_predictions"
bulk = (ARGV[1] || "0").to_i
with_scheduled = ARGV[2] == "with_scheduled"

def serialized_job(queue, arguments)
  {
    "job_class" => "MaskPredictionJob", "job_id" => SecureRandom.uuid, "provider_job_id" => nil,
    "queue_name" => queue, "priority" => nil, "arguments" => arguments, "executions" => 0,
    "exception_executions" => {}, "locale" => "en", "timezone" => "UTC",
    "enqueued_at" => Time.now.utc.iso8601
  }
end

jids = {}
jids["plain"] = Sidekiq::Client.push("class" => "MaskPredictionJob", "queue" => queue, "args" => ["Flameshroud"])
jids["name_and_id"] = Sidekiq::Client.push("class" => "MaskPredictionJob", "queue" => queue,
  "args" => ["Voidgrin", 42], "retry" => 3, "backtrace" => 5, "tags" => ["ml"])
jids["hash"] = Sidekiq::Client.push("class" => "MaskPredictionJob", "queue" => queue,
  "args" => [{ "mask_name" => "Nightfang", "mask_id" => 7, "reply_to" => "maskpredictor:reply:1" }], "retry" => false)
jids["names"] = Sidekiq::Client.push("class" => "MaskPredictionJob", "queue" => queue,
  "args" => [{ "mask_names" => ["Ember Crown", "Frost Veil"] }], "retry" => 0)
# MaskPredictionJob.perform_later(mask_name: "Dusk Warden", mask_id: 99) through Rails' adapter
jids["activejob_kwargs"] = Sidekiq::Client.push(
  "class" => "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper", "wrapped" => "MaskPredictionJob",
  "queue" => queue, "retry" => 5,
  "args" => [serialized_job(queue, [{ "mask_name" => "Dusk Warden", "mask_id" => 99,
                                      "_aj_ruby2_keywords" => ["mask_name", "mask_id"] }])])
# MaskPredictionJob.perform_later("Ashen Mask", 5) through Sidekiq 8's adapter
jids["activejob_positional"] = Sidekiq::Client.push(
  "class" => "Sidekiq::ActiveJob::Wrapper", "wrapped" => "MaskPredictionJob", "queue" => queue,
  "args" => [serialized_job(queue, ["Ashen Mask", 5])])
if bulk > 0
  jids["bulk"] = Sidekiq::Client.push_bulk("class" => "MaskPredictionJob", "queue" => queue,
    "args" => (1..bulk).map { |i| ["bulk mask #{i}", i] })
end
if with_scheduled
  jids["scheduled_due"] = Sidekiq::Client.push("class" => "MaskPredictionJob", "queue" => queue,
    "args" => ["Due Mask"], "at" => Time.now.to_f - 5)
  jids["scheduled_later"] = Sidekiq::Client.push("class" => "MaskPredictionJob", "queue" => queue,
    "args" => ["Later Mask"], "at" => Time.now.to_f + 3600)
  jids["other_queue_due"] = Sidekiq::Client.push("class" => "OtherJob", "queue" => "other",
    "args" => [1], "at" => Time.now.to_f - 5)
end
puts JSON.generate(jids)
