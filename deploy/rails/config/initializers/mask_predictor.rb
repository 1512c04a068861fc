# frozen_string_literal: true

# config/initializers/mask_predictor.rb: the maskpredictor sidecar.
#
# The sidecar reads jobs from the Redis that Sidekiq uses (REDIS_URL) and writes its
# predictions back there: the cache that MaskPredictor.cached reads, and one
# MaskPredictionResultJob per prediction (run the sidecar with
# CALLBACK_CLASS=MaskPredictionResultJob, or CALLBACK_CLASS=MaskPredictor::ActiveJobRelay
# when MaskPredictionResultJob is an ActiveJob class). No other connection is configured here.
#
# Without Rails (a plain Ruby process), require lib/mask_predictor yourself, then load this file.
rails_app = defined?(Rails) && Rails.respond_to?(:application) && Rails.application
require Rails.root.join("lib/mask_predictor").to_s if rails_app

MaskPredictor.configure do |c|
  # The queue the sidecar works: its WORKER_QUEUES (default mask_predictions). No Ruby
  # Sidekiq process may work this queue: leave it out of config/sidekiq.yml.
  c.queue = ENV.fetch("MASK_PREDICTOR_QUEUE", "mask_predictions")
  # How long MaskPredictor.predict_now waits for an answer, in seconds.
  c.timeout = Float(ENV.fetch("MASK_PREDICTOR_TIMEOUT", "5"))
  # The sidecar's limits (its --max-chars and --max-tokens; 1,000 names per job): names and
  # batches over them raise here, before enqueueing, instead of becoming dead jobs.
  c.max_chars = 1000
  c.max_tokens = 100
  c.max_names = 1000
  # The ActiveJob result job MaskPredictor::ActiveJobRelay hands callbacks to (only with
  # CALLBACK_CLASS=MaskPredictor::ActiveJobRelay).
  c.result_job = "MaskPredictionResultJob"
end

# redis-namespace is not supported: the sidecar would never see the jobs. Refuse to boot
# (MaskPredictor::NamespacedRedis, with the reason) once every initializer has configured
# Sidekiq; without Rails the kit's first call checks.
Rails.application.config.after_initialize { MaskPredictor.check_redis! } if rails_app
