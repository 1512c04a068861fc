# frozen_string_literal: true

# app/services/mask_component_predictor_service.rb: the old service class, switched over
# from the Python service (Flask over HTTP, then AWS Lambda) to the sidecar. Its callers
# keep calling
#
#   MaskComponentPredictorService.predict("3M Aura 9205+ N95")
#   # => {mask_name: "3M Aura 9205+ N95", components: {brand: ["3M"], model: ["Aura", "9205+"], ...},
#   #     confidence: 0.97, ...}   (nil when the sidecar did not answer in time)
#   MaskComponentPredictorService.predict_batch(names)  # => [prediction or nil, ...]
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
    rescue MaskPredictor::InvalidName
      nil
    end

    def predict_batch(mask_names, timeout: MaskPredictor.config.timeout)
      MaskPredictor.predict_now_many(mask_names, timeout: timeout).map { |p| symbolize(p) }
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
  end
end
