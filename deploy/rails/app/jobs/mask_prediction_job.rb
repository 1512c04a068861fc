# frozen_string_literal: true

# app/jobs/mask_prediction_job.rb: the ActiveJob variant of MaskPredictor.enqueue, for apps
# that enqueue everything through ActiveJob (queue adapter :sidekiq):
#
#   MaskPredictionJob.perform_later(mask_name: mask.name, mask_id: mask.id)
#   MaskPredictionJob.perform_later(mask_names: names)
#
# ActiveJob's Sidekiq adapter writes its JobWrapper payload to queue:mask_predictions and the
# sidecar unwraps it; #perform never runs in Ruby. If it does, a Ruby Sidekiq process is
# working the sidecar's queue: remove mask_predictions from config/sidekiq.yml.
#
# Loads without Rails (no ActiveJob: the class is simply not defined).
if defined?(ActiveJob::Base)
  class MaskPredictionJob < (defined?(ApplicationJob) ? ApplicationJob : ActiveJob::Base)
    queue_as { MaskPredictor.config.queue }

    def perform(*)
      raise "MaskPredictionJob is worked by the maskpredictor sidecar, not by Ruby: " \
            "a Ruby Sidekiq process is working the #{MaskPredictor.config.queue} queue"
    end
  end
end
