# frozen_string_literal: true

# app/jobs/mask_label_job.rb: the ActiveJob variant of MaskPredictor.label, for apps that
# enqueue everything through ActiveJob (queue adapter :sidekiq):
#
#   MaskLabelJob.perform_later("3M Aura 9205+ N95",
#                              [{ "3M" => "brand" }, { "Aura" => "model" }, { "9205+" => "model" },
#                               { "N95" => "filter_type" }], current_user.email)
#
# Arguments: mask_name, breakdown ([{token => label}, ...], one Hash per token, in order) and
# optionally labelled_by. Unlike MaskPredictor.label, nothing is checked before enqueueing: a
# label the sidecar refuses goes to Sidekiq's dead set with the reason.
#
# ActiveJob's Sidekiq adapter writes its JobWrapper payload to queue:mask_predictions and the
# sidecar unwraps it and stores the label; #perform never runs in Ruby. If it does, a Ruby
# Sidekiq process is working the sidecar's queue: remove mask_predictions from
# config/sidekiq.yml.
#
# Loads without Rails (no ActiveJob: the class is simply not defined).
if defined?(ActiveJob::Base)
  class MaskLabelJob < (defined?(ApplicationJob) ? ApplicationJob : ActiveJob::Base)
    queue_as { MaskPredictor.config.queue }

    def perform(*)
      raise "MaskLabelJob is worked by the maskpredictor sidecar, not by Ruby: " \
            "a Ruby Sidekiq process is working the #{MaskPredictor.config.queue} queue"
    end
  end
end
