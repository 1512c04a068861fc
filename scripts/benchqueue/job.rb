# Ruby Sidekiq side of scripts/bench-queue: a job doing the work equivalent to the
# sidecar's (split the name with the tokenizer's regex, build and JSON-encode a
# result, SET it under a cache key, LPUSH a callback job), and a no-op job.
#   REDIS_URL=... sidekiq -r ./job.rb -c 10 -q bench
require "json"
require "securerandom"
require "sidekiq"

module Bench
  # The reference tokenizer: [\s\-—,\[\]()]+ with Unicode whitespace (Ruby's \s is ASCII).
  SEPARATORS = Regexp.new("[\t\n\v\f\r \u001C-\u001F\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\\-\u2014,\\[\\]()]+")
  LABELS = %w[brand model size color style strap filter_type valved misc].freeze
end

class BenchPredictJob
  include Sidekiq::Worker

  def perform(name, mask_id = nil)
    tokens = name.split(Bench::SEPARATORS).reject(&:empty?)
    labels = tokens.each_index.map { |i| Bench::LABELS[i % Bench::LABELS.size] }
    components = Bench::LABELS.to_h { |l| [l, []] }
    tokens.zip(labels).each { |t, l| components[l] << t }
    result = {
      "mask_name" => name, "tokens" => tokens,
      "breakdown" => tokens.zip(labels).map { |t, l| { t => l } },
      "components" => components, "confidence" => 0.0,
      "model_version" => "ruby-bench", "fallback" => true
    }
    now = Time.now.to_f
    callback = {
      "retry" => true, "queue" => "default", "class" => "BenchCallback",
      "args" => [{ "jid" => jid, "mask_id" => mask_id, "mask_name" => name, "prediction" => result }],
      "jid" => SecureRandom.hex(12), "created_at" => now, "enqueued_at" => now
    }
    Sidekiq.redis do |r|
      r.set("maskpredictor:prediction:" + tokens.join(" ").downcase, JSON.generate(result))
      r.lpush("queue:default", JSON.generate(callback))
    end
  end
end

class NoopJob
  include Sidekiq::Worker

  def perform(*); end
end
