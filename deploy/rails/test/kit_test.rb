# frozen_string_literal: true

# The Rails kit against a real Redis, the real Sidekiq client and a running maskpredictor
# worker (started by cmd/maskpredictor/railskit_test.go, or by hand):
#
#   maskpredictor worker --callback-class MaskPredictionResultJob &
#   REDIS_URL=redis://127.0.0.1:6379/0 ruby deploy/rails/test/kit_test.rb
#
# Rails is not needed: the initializer, the plain Sidekiq pieces and the service class are
# loaded as they are; the ActiveJob variant is checked when ActiveJob is installed.
require "json"
require "minitest/autorun"
require "sidekiq"
require "sidekiq/api"

require "redis"
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=) # Sidekiq 6 on redis-rb 4.8
Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL"), size: 4 } }

KIT = File.expand_path("..", __dir__)
require File.join(KIT, "mask_predictor")
load File.join(KIT, "config/initializers/mask_predictor.rb")
require File.join(KIT, "app/jobs/mask_prediction_result_job")
require File.join(KIT, "app/jobs/mask_prediction_job")
require File.join(KIT, "app/jobs/mask_label_job")
require File.join(KIT, "app/services/mask_component_predictor_service")

# A stand-in for the app's ActiveRecord model: records what the result job writes.
class Mask
  Updated = {}
  Rel = Struct.new(:id) do
    def update_all(attrs)
      Mask::Updated[id] = attrs
      1
    end
  end
  def self.where(id:)
    Rel.new(id)
  end
end

class MaskPredictorKitTest < Minitest::Test
  MODEL_VERSION = ENV["EXPECT_MODEL_VERSION"]

  def wait_until(timeout = 15)
    deadline = Time.now + timeout
    loop do
      v = yield
      return v if v
      flunk "timed out" if Time.now > deadline
      sleep 0.02
    end
  end

  def test_initializer_loads_without_rails
    refute defined?(Rails)
    assert_equal "mask_predictions", MaskPredictor.config.queue
    assert_equal 5.0, MaskPredictor.config.timeout
  end

  def test_activejob_variant
    begin
      require "active_job"
    rescue LoadError
      refute defined?(MaskPredictionJob), "without ActiveJob the variant must not be defined"
      refute defined?(MaskLabelJob), "without ActiveJob the variant must not be defined"
      skip "ActiveJob (Rails) is not installed: MaskPredictionJob is only defined under Rails; " \
           "the plain Sidekiq pieces are tested instead"
    end
    load File.join(KIT, "app/jobs/mask_prediction_job.rb")
    assert_equal MaskPredictor.config.queue, MaskPredictionJob.new.queue_name
    load File.join(KIT, "app/jobs/mask_label_job.rb")
    assert_equal MaskPredictor.config.queue, MaskLabelJob.new.queue_name
  end

  def test_label_payload_is_a_plain_sidekiq_job
    MaskPredictor.config.queue = "kit_inspect"
    jid = MaskPredictor.label("3M Aura", [{ "3M" => "brand" }, { Aura: :model }], labelled_by: "kit")
    job = Sidekiq::Queue.new("kit_inspect").find_job(jid)
    assert_equal "MaskLabelJob", job.klass
    assert_equal ["3M Aura", [{ "3M" => "brand" }, { "Aura" => "model" }], "kit"], job.args
    jid = MaskPredictor.label("3M Aura", [{ "3M" => "brand" }, { "Aura" => "model" }])
    assert_equal ["3M Aura", [{ "3M" => "brand" }, { "Aura" => "model" }]], Sidekiq::Queue.new("kit_inspect").find_job(jid).args
  ensure
    Sidekiq::Queue.new("kit_inspect").clear
    MaskPredictor.config.queue = "mask_predictions"
  end

  def test_label_is_stored_and_answers_for_the_name
    name = "Zimi ZM9233 Kids"
    breakdown = [{ "Zimi" => "brand" }, { "ZM9233" => "model" }, { "Kids" => "misc" }]
    jid = MaskPredictor.label(name, breakdown, labelled_by: "kit-test")
    pred = wait_until { (p = MaskPredictor.cached(name)) && p["source"] == "label" && p }
    assert_equal "label", pred["model_version"]
    assert_equal breakdown, pred["breakdown"]
    assert_equal ["Kids"], pred["components"]["misc"]
    assert_equal 1.0, pred["confidence"]
    # A label answers whatever model version is asked for, and any spelling of the name.
    refute_nil MaskPredictor.cached(name, model_version: "v0-other")
    assert_equal ["ＺＩＭＩ"], MaskPredictor.cached("ＺＩＭＩ zm9233—kids")["components"]["brand"]
    stored = JSON.parse(Sidekiq.redis { |r| r.call("HGET", "maskpredictor:labels", MaskPredictor.normalize(name)) })
    assert_equal "kit-test", stored["labelled_by"]
    assert_equal "sidekiq", stored["source"]
    # No callback job for a label, and no retry or dead entry.
    refute Sidekiq::Queue.new("default").any? { |j| j.args.first.is_a?(Hash) && j.args.first["jid"] == jid }
    refute Sidekiq::RetrySet.new.find_job(jid)
    refute Sidekiq::DeadSet.new.find_job(jid)
    # predict_now of the labelled name answers with the label.
    assert_equal "label", MaskPredictor.predict_now(name, use_cache: false, timeout: 10)["source"]
  end

  def test_invalid_label_is_refused_before_enqueueing
    size = Sidekiq::Queue.new(MaskPredictor.config.queue).size
    assert_raises(MaskPredictor::InvalidLabel) { MaskPredictor.label("3M Aura", [{ "3M" => "brand" }]) }
    assert_raises(MaskPredictor::InvalidLabel) { MaskPredictor.label("3M Aura", [{ "3M" => "brand" }, { "Aurora" => "model" }]) }
    assert_raises(MaskPredictor::InvalidLabel) { MaskPredictor.label("3M Aura", [{ "3M" => "brand" }, { "Aura" => "colour" }]) }
    assert_raises(MaskPredictor::InvalidLabel) { MaskPredictor.label("3M Aura", { "3M" => "brand", "Aura" => "model" }) }
    assert_raises(MaskPredictor::InvalidLabel) { MaskPredictor.label("3M Aura", [{ "3M" => "brand", "Aura" => "model" }]) }
    assert_raises(MaskPredictor::InvalidLabel) { MaskPredictor.label(" - ", []) }
    assert_equal size, Sidekiq::Queue.new(MaskPredictor.config.queue).size
  end

  def test_payload_is_a_plain_sidekiq_job
    MaskPredictor.config.queue = "kit_inspect"
    jid = MaskPredictor.enqueue("3M Aura 9205+ N95", mask_id: 7)
    job = Sidekiq::Queue.new("kit_inspect").find_job(jid)
    assert_equal "MaskPredictionJob", job.klass
    assert_equal [{ "mask_name" => "3M Aura 9205+ N95", "mask_id" => 7 }], job.args
    jid = MaskPredictor.enqueue_batch(["3M 1860s", "Zimi ZM9233"])
    assert_equal [{ "mask_names" => ["3M 1860s", "Zimi ZM9233"] }], Sidekiq::Queue.new("kit_inspect").find_job(jid).args
  ensure
    Sidekiq::Queue.new("kit_inspect").clear
    MaskPredictor.config.queue = "mask_predictions"
  end

  def test_enqueue_cache_and_result_job
    name = "3M Aura 9205+ N95"
    jid = MaskPredictor.enqueue(name, mask_id: 42)
    pred = wait_until { MaskPredictor.cached(name) }
    assert_equal ["3M"], pred["components"]["brand"]
    assert_equal %w[Aura 9205+], pred["components"]["model"]
    assert_equal ["N95"], pred["components"]["filter_type"]
    assert_equal MODEL_VERSION, pred["model_version"] if MODEL_VERSION
    assert_equal 9, pred["components"].size

    cb = wait_until { Sidekiq::Queue.new("default").find { |j| j.args.first["jid"] == jid } }
    assert_equal "MaskPredictionResultJob", cb.klass
    assert_equal 42, cb.args.first["mask_id"]
    MaskPredictionResultJob.new.perform(*cb.args)
    stored = Mask::Updated.fetch(42)
    assert_equal ["3M"], stored[:predicted_components]["brand"]
    assert_equal pred["model_version"], stored[:prediction_model_version]
    assert_equal false, stored[:prediction_fallback]
    assert_operator stored[:prediction_confidence], :>, 0.5
  end

  def test_cached_answers_with_the_callers_tokens
    MaskPredictor.enqueue("Moldex 2200N95 Medium")
    wait_until { MaskPredictor.cached("Moldex 2200N95 Medium") }
    other = "ＭＯＬＤＥＸ 2200n95—medium"
    pred = MaskPredictor.cached(other)
    refute_nil pred, "the same normalized name must hit"
    assert_equal other, pred["mask_name"]
    assert_equal %w[ＭＯＬＤＥＸ 2200n95 medium], pred["tokens"]
    assert_equal ["ＭＯＬＤＥＸ"], pred["components"]["brand"]
    assert_nil MaskPredictor.cached("Moldex 2200N95 Medium", model_version: "v0-other")
    assert_nil MaskPredictor.cached("a name nobody enqueued 1234")
  end

  def test_predict_now
    pred = MaskPredictor.predict_now("Honeywell DC365 N95 Small", use_cache: false, timeout: 10)
    refute_nil pred
    assert_equal "Honeywell DC365 N95 Small", pred["mask_name"]
    assert_equal ["Honeywell"], pred["components"]["brand"]
    assert_equal MODEL_VERSION, pred["model_version"] if MODEL_VERSION
    names = ["3M 1860s", "Zimi ZM9233", "BreatheTeq - Large"]
    preds = MaskPredictor.predict_now_many(names, timeout: 10)
    assert_equal names, preds.map { |p| p["mask_name"] }
    assert_equal [["3M"], ["Zimi"], ["BreatheTeq"]], preds.map { |p| p["components"]["brand"] }
    assert_equal [], Sidekiq.redis { |r| r.keys("#{MaskPredictor::REPLY_PREFIX}*") }
  end

  def test_invalid_name_is_refused_before_enqueueing
    assert_raises(MaskPredictor::InvalidName) { MaskPredictor.enqueue(" - , ()") }
    assert_raises(MaskPredictor::InvalidName) { MaskPredictor.enqueue_batch(["3M", ""]) }
    assert_nil MaskComponentPredictorService.predict("---")
  end

  def test_service_class_keeps_the_old_interface
    res = MaskComponentPredictorService.predict("3M Aura 9205+ N95", timeout: 10)
    assert_equal "3M Aura 9205+ N95", res[:mask_name]
    assert_equal ["3M"], res[:components][:brand]
    assert_equal %w[Aura 9205+], res[:components][:model]
    assert_kind_of Float, res[:confidence]
    batch = MaskComponentPredictorService.predict_batch(["3M 1860s", "Zimi ZM9233"], timeout: 10)
    assert_equal [["3M"], ["Zimi"]], batch.map { |r| r[:components][:brand] }
    mask = Struct.new(:id, :name).new(77, "Powecom KN95 Earloop")
    refute_nil MaskComponentPredictorService.predict_later(mask)
    wait_until { Sidekiq::Queue.new("default").find { |j| j.args.first["mask_id"] == 77 } }
  end

  def test_enqueue_batch_fills_the_cache
    names = ["Envo Mask Original Medium Black", "Kimberly-Clark Duckbill N95 Regular", "BOTN KF94 2D Kids Pink"]
    MaskPredictor.enqueue_batch(names)
    preds = wait_until { (p = MaskPredictor.cached_many(names)).none?(&:nil?) && p }
    assert_equal names, preds.map { |p| p["mask_name"] }
  end
end
