# frozen_string_literal: true

# app/jobs/mask_prediction_result_job.rb, ActiveJob variant: copy this file instead of
# deploy/rails/app/jobs/mask_prediction_result_job.rb (the plain Sidekiq one) when the app's
# jobs are ActiveJob classes, and run the sidecar with
#
#   CALLBACK_CLASS=MaskPredictor::ActiveJobRelay    (not MaskPredictionResultJob)
#
# The sidecar pushes plain Sidekiq jobs, which a Sidekiq server cannot run as an ActiveJob
# class ("undefined method `jid='"); MaskPredictor::ActiveJobRelay (lib/mask_predictor/
# active_job_relay.rb) is a Sidekiq job that calls MaskPredictionResultJob.perform_now with
# the callback's argument (MaskPredictor.config.result_job names this class). retry_on,
# discard_on and rescue_from work as with perform_now; the relay runs on CALLBACK_QUEUE.
#
#   {"jid" => "<jid of the prediction job>", "mask_id" => 42, "mask_name" => "3M Aura 9205+ N95",
#    "prediction" => {"components" => {"brand" => ["3M"], ...}, "confidence" => 0.97,
#                     "model_version" => "v4-…", "fallback" => false, ...}}
#
# Loads without Rails (no ActiveJob: the class is simply not defined).
if defined?(ActiveJob::Base)
  class MaskPredictionResultJob < (defined?(ApplicationJob) ? ApplicationJob : ActiveJob::Base)
    queue_as :default # used only when the app enqueues it itself (or retry_on re-enqueues it)

    def perform(arg)
      result = MaskPredictor::Result.new(arg)
      return if result.mask_id.nil? # enqueued without a mask: the cache has the answer

      store(result)
    end

    # Example: keep the components, confidence and model version on the mask.
    def store(result)
      ::Mask.where(id: result.mask_id).update_all(
        predicted_components: result.components,
        prediction_confidence: result.confidence,
        prediction_model_version: result.model_version,
        prediction_fallback: result.fallback?
      )
    end
  end
end
