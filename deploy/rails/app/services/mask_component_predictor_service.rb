# frozen_string_literal: true

# app/services/mask_component_predictor_service.rb: the old service class, switched over
# from the Python service (Flask over HTTP, then AWS Lambda) to the sidecar. Its callers
# keep calling
#
#   MaskComponentPredictorService.predict("3M Aura 9205+ N95")
#   # => {mask_name: "3M Aura 9205+ N95", components: {brand: ["3M"], model: ["Aura", "9205+"], ...},
#   #     confidence: 0.97, ...}
#   MaskComponentPredictorService.predict_batch(names)  # => [prediction or nil, ...]
#
# nil for a name that cannot be predicted (no tokens, over the sidecar's limits, refused by
# the sidecar: logged with the reason) or that was not answered within the timeout. Use
# MaskPredictor.predict_now directly to get the reason as an exception
# (MaskPredictor::InvalidName, MaskPredictor::Rejected).
#
# and may move to the asynchronous form, which needs no waiting:
#
#   MaskComponentPredictorService.predict_later(mask)   # → MaskPredictionResultJob
#
# USE_LAMBDA_PREDICTOR, LAMBDA_FUNCTION_NAME, MASK_PREDICTOR_PORT and the AWS keys are no
# longer read; remove them from the app's config.
class MaskComponentPredictorService
  class << self
    def predict(mask_name, timeout: MaskPredictor.config.timeout)
      symbolize(MaskPredictor.predict_now(mask_name, timeout: timeout))
    rescue MaskPredictor::InvalidName, MaskPredictor::Rejected => e
      warn_refused(e)
      nil
    end

    # Names the sidecar would refuse are nil (and logged) without a job; the others go in
    # jobs of at most MaskPredictor.config.max_names names, one after the other, each
    # waiting up to timeout.
    def predict_batch(mask_names, timeout: MaskPredictor.config.timeout)
      names = mask_names.map(&:to_s)
      out = Array.new(names.size)
      ok = names.each_index.select do |i|
        reason = MaskPredictor.invalid_name_reason(names[i])
        warn_refused(reason) if reason
        reason.nil?
      end
      slice = MaskPredictor.config.max_names || [ok.size, 1].max
      ok.each_slice(slice) do |idx|
        preds = MaskPredictor.predict_now_many(idx.map { |i| names[i] }, timeout: timeout)
        idx.zip(preds) { |i, p| out[i] = symbolize(p) }
      rescue MaskPredictor::Rejected => e
        warn_refused(e)
      end
      out
    end

    def predict_later(mask)
      MaskPredictor.enqueue(mask.name, mask_id: mask.id)
    end

    private

    # The old service returned symbol keys (components: {brand: [...]}).
    def symbolize(value)
      case value
      when Hash then value.to_h { |k, v| [k.to_sym, symbolize(v)] }
      when Array then value.map { |v| symbolize(v) }
      else value
      end
    end

    def warn_refused(why)
      msg = "MaskComponentPredictorService: not predicted: #{why.respond_to?(:message) ? why.message : why}"
      logger = defined?(Rails) && Rails.respond_to?(:logger) && Rails.logger ? Rails.logger : Sidekiq.logger
      logger.warn(msg)
    end
  end
end
