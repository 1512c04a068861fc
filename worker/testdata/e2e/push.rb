# Pushes the jobs of a spec file with the real Sidekiq client, the way a Rails app does,
# and prints their jids as a JSON array (same order as the spec).
#
#   REDIS_URL=redis://127.0.0.1:6379/0 ruby push.rb SPEC.json [QUEUE]
#
# SPEC.json: [{"form": F, "name": "...", "names": [...], "id": 7}, ...] with F one of
#   plain        args ["name"]
#   with_id      args ["name", id], "retry" => 3
#   hash         args [{"mask_name", "mask_id"}], "retry" => 5, tags
#   retry_false  args ["name"], "retry" => false
#   batch        args [{"mask_names" => [...]}], "retry" => 0
#   activejob    Rails' ActiveJob adapter (JobWrapper), perform_later(mask_name:, mask_id:)
#   activejob8   Sidekiq 8's adapter class name, perform_later("name", id)
#   raw          LPUSH the "payload" string as is (not JSON, wrong shapes...)
# Rails is not installed, so ActiveJob payloads are built by hand in the shape the adapter
# writes (class = wrapper, "wrapped", args[0] = job.serialize).
require "json"
require "securerandom"
require "time"
require "sidekiq"

Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL"), size: 2 } }

spec = JSON.parse(File.read(ARGV.fetch(0), encoding: "UTF-8"))
queue = ARGV[1] || "mask_predictions"

def serialized(queue, arguments)
  {
    "job_class" => "MaskPredictionJob", "job_id" => SecureRandom.uuid, "provider_job_id" => nil,
    "queue_name" => queue, "priority" => nil, "arguments" => arguments, "executions" => 0,
    "exception_executions" => {}, "locale" => "en", "timezone" => "UTC",
    "enqueued_at" => Time.now.utc.iso8601
  }
end

base = { "class" => "MaskPredictionJob", "queue" => queue }
jids = spec.map do |s|
  case s.fetch("form")
  when "plain"
    Sidekiq::Client.push(base.merge("args" => [s["name"]]))
  when "with_id"
    Sidekiq::Client.push(base.merge("args" => [s["name"], s["id"]], "retry" => 3))
  when "hash"
    Sidekiq::Client.push(base.merge("args" => [{ "mask_name" => s["name"], "mask_id" => s["id"] }],
                                    "retry" => 5, "tags" => ["e2e"]))
  when "retry_false"
    Sidekiq::Client.push(base.merge("args" => [s["name"]], "retry" => false))
  when "batch"
    Sidekiq::Client.push(base.merge("args" => [{ "mask_names" => s["names"] }], "retry" => 0))
  when "activejob"
    Sidekiq::Client.push(
      "class" => "ActiveJob::QueueAdapters::SidekiqAdapter::JobWrapper", "wrapped" => "MaskPredictionJob",
      "queue" => queue, "retry" => true,
      "args" => [serialized(queue, [{ "mask_name" => s["name"], "mask_id" => s["id"],
                                      "_aj_ruby2_keywords" => ["mask_name", "mask_id"] }])])
  when "activejob8"
    Sidekiq::Client.push(
      "class" => "Sidekiq::ActiveJob::Wrapper", "wrapped" => "MaskPredictionJob", "queue" => queue,
      "args" => [serialized(queue, [s["name"], s["id"]])])
  when "raw"
    Sidekiq.redis { |r| r.sadd("queues", queue); r.lpush("queue:#{queue}", s.fetch("payload")) }
    nil
  else
    raise "unknown form #{s["form"]}"
  end
end
puts JSON.generate(jids)
