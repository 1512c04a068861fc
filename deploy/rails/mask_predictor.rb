# frozen_string_literal: true

# The Rails side of the maskpredictor sidecar. Copy deploy/rails/mask_predictor.rb and
# deploy/rails/mask_predictor/ to your app's lib/, then require it from the initializer
# (config/initializers/mask_predictor.rb). Needs only Sidekiq (6, 7 or 8), no Rails.
#
#   MaskPredictor.enqueue("3M Aura 9205+ N95", mask_id: mask.id)  # async: cache + callback job
#   MaskPredictor.cached("3M Aura 9205+ N95")                     # => prediction Hash or nil (one GET)
#   MaskPredictor.predict_now("3M Aura 9205+ N95", timeout: 5)    # sync: waits for the sidecar's reply
#   MaskPredictor.label("3M Aura", [{ "3M" => "brand" }, { "Aura" => "model" }], labelled_by: "me")
#
# An ActiveJob result job needs CALLBACK_CLASS=MaskPredictor::ActiveJobRelay (mask_predictor/active_job_relay.rb).
require_relative "mask_predictor/normalize"
require_relative "mask_predictor/client"
require_relative "mask_predictor/active_job_relay"
