# Reads back what the worker wrote, through Sidekiq's own API and the Ruby cache helper, and
# prints one JSON object:
#   {"callbacks": [{"jid", "class", "queue", "arg"}...],      Sidekiq::Queue.new(CALLBACK_QUEUE)
#    "dead": [{"jid", "class", "error_class", "error_message", "failed_at"}...],  Sidekiq::DeadSet
#    "cache": {"found": n, "missing": [names], "entries": {name: prediction}}}
#
#   REDIS_URL=... ruby read_back.rb NAMES.json [CALLBACK_QUEUE]
# NAMES.json is a JSON array of mask names whose cache entries Rails would look up with
# MaskPredictor.cache_key (deploy/rails/mask_predictor/normalize.rb).
require "json"
require "sidekiq"
require "sidekiq/api"
require_relative "../../../deploy/rails/mask_predictor/normalize"

Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL"), size: 2 } }

names = JSON.parse(File.read(ARGV.fetch(0), encoding: "UTF-8"))
cbq = ARGV[1] || "default"

callbacks = Sidekiq::Queue.new(cbq).map do |job|
  { "jid" => job.jid, "class" => job.klass, "queue" => job.queue, "arg" => job.args.first,
    "enqueued_at" => job.enqueued_at&.to_f }
end

dead = Sidekiq::DeadSet.new.map do |entry|
  { "jid" => entry.jid, "class" => entry.klass, "error_class" => entry["error_class"],
    "error_message" => entry["error_message"], "failed_at" => entry["failed_at"] }
end

entries = {}
missing = []
Sidekiq.redis do |r|
  names.each_slice(200) do |slice|
    vals = r.mget(*slice.map { |n| MaskPredictor.cache_key(n) })
    slice.zip(vals).each do |n, v|
      if v.nil?
        missing << n
      else
        entries[n] = JSON.parse(v)
      end
    end
  end
end

puts JSON.generate("callbacks" => callbacks, "dead" => dead,
                   "cache" => { "found" => entries.size, "missing" => missing, "entries" => entries })
