# frozen_string_literal: true

require "sidekiq"

module MaskPredictor
  # The callback class for apps whose result job is an ActiveJob class.
  #
  # The sidecar pushes its callback as a plain Sidekiq job: {"class" => CALLBACK_CLASS,
  # "args" => [{"jid", "mask_id", "mask_name", "prediction"}]}. Sidekiq runs such a job only
  # if the class is a Sidekiq job (Sidekiq::Job / Sidekiq::Worker): naming an ActiveJob class
  # there fails in the Sidekiq server with "undefined method `jid='" and the callback ends in
  # the retry set, then the dead set. Run the sidecar with
  #
  #   CALLBACK_CLASS=MaskPredictor::ActiveJobRelay
  #
  # instead: this Sidekiq job hands the argument, unchanged, to the ActiveJob class named by
  # MaskPredictor.config.result_job ("MaskPredictionResultJob" by default) with perform_now,
  # inside the same Sidekiq job. So the ActiveJob's callbacks, rescue_from, retry_on and
  # discard_on apply (retry_on re-enqueues it through ActiveJob's Sidekiq adapter); any other
  # exception fails this relay job, which Sidekiq retries like any job. The ActiveJob's own
  # queue_as is not used: the relay runs on the sidecar's CALLBACK_QUEUE ("default").
  #
  # Loads without ActiveJob (it is only looked up when a callback runs).
  class ActiveJobRelay
    include(defined?(Sidekiq::Job) ? Sidekiq::Job : Sidekiq::Worker)
    sidekiq_options queue: "default"

    def perform(arg)
      target.perform_now(arg)
    end

    def target
      name = MaskPredictor.config.result_job.to_s
      klass = Object.const_get(name)
      unless defined?(::ActiveJob::Base) && klass.is_a?(Class) && klass <= ::ActiveJob::Base
        raise ArgumentError, "MaskPredictor.config.result_job is #{name}, not an ActiveJob class; a plain Sidekiq " \
                             "job class needs no relay: name it in the sidecar's CALLBACK_CLASS"
      end
      klass
    end
  end
end
