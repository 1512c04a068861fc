# frozen_string_literal: true

# config/initializers/mask_predictor.rb: the maskpredictor sidecar.
#
# The sidecar reads jobs from the Redis that Sidekiq uses (REDIS_URL) and writes its
# predictions back there: the cache that MaskPredictor.cached reads, and one
# MaskPredictionResultJob per prediction (run the sidecar with
# CALLBACK_CLASS=MaskPredictionResultJob). No other connection is configured here.
require Rails.root.join("lib/mask_predictor").to_s if defined?(Rails)

MaskPredictor.configure do |c|
  # The queue the sidecar works: its WORKER_QUEUES (default mask_predictions). No Ruby
  # Sidekiq process may work this queue: leave it out of config/sidekiq.yml.
  c.queue = ENV.fetch("MASK_PREDICTOR_QUEUE", "mask_predictions")
  # How long MaskPredictor.predict_now waits for an answer, in seconds.
  c.timeout = Float(ENV.fetch("MASK_PREDICTOR_TIMEOUT", "5"))
end
