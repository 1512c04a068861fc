# frozen_string_literal: true

# app/jobs/mask_prediction_result_job.rb: the callback the sidecar pushes after every
# prediction (run it with CALLBACK_CLASS=MaskPredictionResultJob and CALLBACK_QUEUE set to
# a queue your Sidekiq works, "default" by default). Its one argument:
#
#   {"jid" => "<jid of the prediction job>", "mask_id" => 42, "mask_name" => "3M Aura 9205+ N95",
#    "prediction" => {"components" => {"brand" => ["3M"], ...}, "confidence" => 0.97,
#                     "model_version" => "v2-…", "fallback" => false, ...}}
#
# A plain Sidekiq job, so it runs with or without ActiveJob. Adapt #store to your schema.
# Do not turn it into an ActiveJob class: the sidecar pushes a plain Sidekiq job, which a
# Sidekiq server cannot run as one ("undefined method `jid='"). For an ActiveJob result job use
# deploy/rails/variants/active_job/mask_prediction_result_job.rb with
# CALLBACK_CLASS=MaskPredictor::ActiveJobRelay (the kit's README, "ActiveJob apps").
class MaskPredictionResultJob
  include(defined?(Sidekiq::Job) ? Sidekiq::Job : Sidekiq::Worker)
  sidekiq_options queue: "default"

  def perform(arg)
    result = MaskPredictor::Result.new(arg)
    return if result.mask_id.nil? # enqueued without a mask: the cache has the answer

    store(result)
  end

  # Example: keep the components, confidence and model version on the mask. Fallback
  # predictions (no model loaded in the sidecar) are kept too, marked, so they can be
  # recomputed later.
  def store(result)
    ::Mask.where(id: result.mask_id).update_all(
      predicted_components: result.components,
      prediction_confidence: result.confidence,
      prediction_model_version: result.model_version,
      prediction_fallback: result.fallback?
    )
  end
end
