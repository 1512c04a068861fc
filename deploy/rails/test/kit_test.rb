# frozen_string_literal: true

# The Rails kit against a real Redis, the real Sidekiq client and a running maskpredictor
# worker (started by cmd/maskpredictor/railskit_test.go, or by hand):
#
#   maskpredictor worker --callback-class MaskPredictionResultJob &
#   REDIS_URL=redis://127.0.0.1:6379/0 ruby deploy/rails/test/kit_test.rb
#
# Rails is not needed: the initializer, the plain Sidekiq pieces and the service class are
# loaded as they are. Where railties and ActiveJob are installed, a minimal Rails app
# (test/support/rails_app plus the kit's files, copied as the README says) is booted too, and
# with KIT_AJ_QUEUE/KIT_RELAY_QUEUE (a second sidecar on that queue with
# CALLBACK_CLASS=MaskPredictor::ActiveJobRelay, as the Go test starts it) the ActiveJob result
# job runs in a real Sidekiq server. RUBYOPT=-r…/test/support/without_rails.rb hides Rails
# where it is installed (the Go test runs the file both ways).
require "fileutils"
require "json"
require "open3"
require "rbconfig"
require "tmpdir"
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
  WITHOUT_RAILS = $LOADED_FEATURES.any? { |f| f.end_with?("/support/without_rails.rb") }
  RAILS_AVAILABLE = !WITHOUT_RAILS && system(RbConfig.ruby, "-e", 'require "rails"; require "active_job"',
                                             out: File::NULL, err: File::NULL)

  # Runs code in a fresh Ruby process (same RUBYOPT, so the same Rails-or-not setup) and
  # returns [output, status].
  def ruby_eval(code, env = {}, chdir: KIT)
    Open3.capture2e(ENV.to_h.merge(env), RbConfig.ruby, "-e", code, chdir: chdir)
  end

  def monotonic
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  def queue_sizes
    q = MaskPredictor.config.queue
    [Sidekiq::Queue.new(q).size, Sidekiq::DeadSet.new.size, Sidekiq::RetrySet.new.size]
  end

  def wait_until(timeout = 15)
    deadline = Time.now + timeout
    loop do
      v = yield
      return v if v
      flunk "timed out" if Time.now > deadline
      sleep 0.02
    end
  end

  # The initializer must load in a process without a Rails application, whether or not some
  # gem defined a Rails module (railties' minitest plugin does, when railties is installed).
  def test_initializer_loads_without_rails
    if WITHOUT_RAILS
      refute defined?(Rails), "Rails hidden, yet defined"
      assert_raises(LoadError) { require "active_job" }
    end
    [["plain", ""], ["Rails module without an application", "module Rails; end"]].each do |what, prelude|
      out, st = ruby_eval(<<~RUBY)
        require "sidekiq"
        #{prelude}
        require "./mask_predictor"
        load "./config/initializers/mask_predictor.rb"
        c = MaskPredictor.config
        print [c.queue, c.timeout, c.max_chars, c.max_tokens, c.max_names, c.result_job].inspect
      RUBY
      assert st.success?, "#{what}: #{out}"
      assert_equal '["mask_predictions", 5.0, 1000, 100, 1000, "MaskPredictionResultJob"]', out.lines.last, what
    end
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

  LONG_NAME = "A" * 1001
  MANY_TOKENS = (1..101).map { |i| "t#{i}" }.join(" ")
  MANY_NAMES = (1..1001).map { |i| "Kit Batch Mask #{i}" }

  # What the sidecar would refuse is refused here, before anything reaches Redis: no job,
  # no dead entry.
  def test_over_the_limits_refused_before_enqueueing
    before = queue_sizes
    e = assert_raises(MaskPredictor::InvalidName) { MaskPredictor.predict_now(LONG_NAME, timeout: 10) }
    assert_match(/1001 characters, over the limit of 1000/, e.message)
    e = assert_raises(MaskPredictor::InvalidName) { MaskPredictor.predict_now(MANY_TOKENS, timeout: 10) }
    assert_match(/101 tokens, over the limit of 100/, e.message)
    e = assert_raises(MaskPredictor::TooManyNames) { MaskPredictor.predict_now_many(MANY_NAMES, timeout: 10) }
    assert_match(/1001 mask names/, e.message)
    assert_raises(MaskPredictor::InvalidName) { MaskPredictor.enqueue(LONG_NAME) }
    assert_raises(MaskPredictor::InvalidName) { MaskPredictor.enqueue_batch(["3M", MANY_TOKENS]) }
    assert_raises(MaskPredictor::TooManyNames) { MaskPredictor.enqueue_batch(MANY_NAMES) }
    assert_raises(MaskPredictor::InvalidLabel) { MaskPredictor.label(LONG_NAME, [{ LONG_NAME => "brand" }]) }
    assert_raises(MaskPredictor::InvalidLabel) do
      MaskPredictor.label("3M Aura", [{ "3M" => "brand" }, { "Aura" => "model" }], labelled_by: "x" * 201)
    end
    assert_kind_of MaskPredictor::Error, MaskPredictor::InvalidName.new("x")
    assert_kind_of ArgumentError, MaskPredictor::TooManyNames.new("x")
    assert_equal before, queue_sizes
    assert_nil MaskPredictor.invalid_name_reason("3M Aura 9205+ N95")
    assert_nil MaskPredictor.invalid_name_reason("A" * 1000)
    assert_nil MaskPredictor.invalid_name_reason((1..100).map { |i| "t#{i}" }.join(" "))
  end

  # With the kit's checks off, the sidecar refuses the same jobs (dead set) and its error reply
  # makes predict_now / predict_now_many raise Rejected at once, not after the timeout.
  def test_sidecar_refusal_raises_rejected_at_once
    MaskPredictor.config.max_chars = nil
    MaskPredictor.config.max_tokens = nil
    MaskPredictor.config.max_names = nil
    [
      [-> { MaskPredictor.predict_now(LONG_NAME, timeout: 10) }, /1001 characters/, [LONG_NAME]],
      [-> { MaskPredictor.predict_now(MANY_TOKENS, timeout: 10) }, /101 tokens/, [MANY_TOKENS]],
      [-> { MaskPredictor.predict_now_many(MANY_NAMES, timeout: 10, use_cache: false) }, /1001 mask names/, MANY_NAMES]
    ].each do |call, reason, names|
      start = monotonic
      e = assert_raises(MaskPredictor::Rejected) { call.call }
      took = monotonic - start
      assert_operator took, :<, 2, "Rejected after #{took.round(2)} s (timeout 10 s): #{e.message}"
      assert_match reason, e.reason
      assert_match reason, e.message
      assert_equal names, e.mask_names
      refute_nil e.jid
      dead = wait_until(5) { Sidekiq::DeadSet.new.find_job(e.jid) }
      assert_match reason, dead["error_message"].to_s
    end
    assert_equal [], Sidekiq.redis { |r| r.keys("#{MaskPredictor::REPLY_PREFIX}*") }
  ensure
    MaskPredictor.config.max_chars = 1000
    MaskPredictor.config.max_tokens = 100
    MaskPredictor.config.max_names = 1000
  end

  def test_service_class_gives_nil_for_refused_names
    assert_nil MaskComponentPredictorService.predict(LONG_NAME, timeout: 10)
    res = MaskComponentPredictorService.predict_batch(["3M 1860s", MANY_TOKENS, "Zimi ZM9233"], timeout: 10)
    assert_equal [["3M"], nil, ["Zimi"]], res.map { |r| r && r[:components][:brand] }
    MaskPredictor.config.max_tokens = nil
    start = monotonic
    assert_nil MaskComponentPredictorService.predict(MANY_TOKENS, timeout: 10) # refused by the sidecar
    assert_operator monotonic - start, :<, 2
  ensure
    MaskPredictor.config.max_tokens = 100
  end

  # redis-namespace: the kit refuses to talk through it (the sidecar would never see the jobs).
  # With the redis-namespace gem when installed (Sidekiq 6's namespace: option), else with a
  # stand-in: a connection that answers #namespace as Redis::Namespace does.
  def test_redis_namespace_is_refused
    out, st = ruby_eval(<<~RUBY)
      require "sidekiq"
      require "./mask_predictor"
      begin
        require "redis/namespace"
        Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL"), namespace: "kitns" } }
        print "redis-namespace "
      rescue LoadError
        require "connection_pool"
        require "delegate"
        class NsStandIn < SimpleDelegator
          def namespace = "kitns"
        end
        Sidekiq.configure_client { |c| c.redis = ConnectionPool.new(size: 1) { NsStandIn.new(Redis.new(url: ENV.fetch("REDIS_URL"))) } }
        print "stand-in "
      end
      load "./config/initializers/mask_predictor.rb"
      %w[enqueue predict_now cached].each do |m|
        MaskPredictor.public_send(m, "3M Aura 9205+ N95")
        print "\#{m}: not refused "
      rescue MaskPredictor::NamespacedRedis => e
        print "\#{m}: refused "
        $msg = e.message
      end
      print $msg
    RUBY
    assert st.success?, out
    assert_match(/enqueue: refused predict_now: refused cached: refused/, out)
    assert_match(/namespace "kitns"/, out)
    assert_match(/Remove the namespace: option/, out)
    assert_equal [], Sidekiq.redis { |r| r.keys("kitns:*") }
  end

  # --- A Rails app (railties and ActiveJob installed) ---------------------------------

  @rails_app = nil
  class << self
    attr_accessor :rails_app
  end

  # A copy of test/support/rails_app with the kit's files where the README puts them (the
  # ActiveJob variant of the result job).
  def rails_app
    skip "Rails hidden (without_rails.rb): the Rails app is tested in the run with railties" if WITHOUT_RAILS
    skip "railties/ActiveJob are not installed (apt-get install ruby-railties ruby-activejob)" unless RAILS_AVAILABLE
    self.class.rails_app ||= begin
      dir = Dir.mktmpdir("kit_rails_app")
      Minitest.after_run { FileUtils.rm_rf(dir) }
      FileUtils.cp_r(File.join(KIT, "test/support/rails_app/."), dir)
      %w[lib app/jobs app/services].each { |d| FileUtils.mkdir_p(File.join(dir, d)) }
      FileUtils.cp_r([File.join(KIT, "mask_predictor.rb"), File.join(KIT, "mask_predictor")], File.join(dir, "lib"))
      FileUtils.cp(File.join(KIT, "config/initializers/mask_predictor.rb"), File.join(dir, "config/initializers"))
      FileUtils.cp([File.join(KIT, "app/jobs/mask_prediction_job.rb"), File.join(KIT, "app/jobs/mask_label_job.rb"),
                    File.join(KIT, "variants/active_job/mask_prediction_result_job.rb")], File.join(dir, "app/jobs"))
      FileUtils.cp(File.join(KIT, "app/services/mask_component_predictor_service.rb"), File.join(dir, "app/services"))
      dir
    end
  end

  def test_rails_app_boots_with_the_kit
    dir = rails_app
    out, st = ruby_eval(<<~RUBY, { "RAILS_ENV" => "test" }, chdir: dir)
      require "./config/environment"
      res = MaskComponentPredictorService.predict("3M Aura 9205+ N95", timeout: 10)
      puts JSON.generate(
        "queue" => MaskPredictor.config.queue,
        "relay_is_sidekiq_job" => MaskPredictor::ActiveJobRelay.respond_to?(:sidekiq_options),
        "result_job_is_active_job" => MaskPredictionResultJob < ActiveJob::Base,
        "label_job_queue" => MaskLabelJob.new.queue_name,
        "jid" => MaskPredictionJob.perform_later(mask_name: "Kit Rails App Mask N95", mask_id: 4243).provider_job_id,
        "brand" => res[:components][:brand]
      )
    RUBY
    assert st.success?, out
    got = JSON.parse(out.lines.last)
    assert_equal "mask_predictions", got["queue"]
    assert got["relay_is_sidekiq_job"]
    assert got["result_job_is_active_job"]
    assert_equal "mask_predictions", got["label_job_queue"]
    assert_equal ["3M"], got["brand"]
    refute_nil got["jid"]
    pred = wait_until { MaskPredictor.cached("Kit Rails App Mask N95") } # the ActiveJob payload, predicted
    assert_equal ["N95"], pred["components"]["filter_type"]
  end

  def test_rails_app_refuses_redis_namespace_at_boot
    dir = rails_app
    skip "the redis-namespace gem is not installed (apt-get install ruby-redis-namespace)" unless
      system(RbConfig.ruby, "-e", 'require "redis/namespace"', out: File::NULL, err: File::NULL)
    out, st = ruby_eval(<<~RUBY, { "RAILS_ENV" => "test", "KIT_SIDEKIQ_NAMESPACE" => "kitns" }, chdir: dir)
      require "./config/environment"
      puts "booted"
    RUBY
    refute st.success?, out
    refute_match(/booted/, out)
    assert_match(/MaskPredictor::NamespacedRedis/, out)
    assert_match(/namespace "kitns"/, out)
  end

  # The sidecar (the Go test's second one, CALLBACK_CLASS=MaskPredictor::ActiveJobRelay)
  # pushes its callback as a plain Sidekiq job; a real Sidekiq server running the Rails app
  # runs the relay, which hands it to the ActiveJob MaskPredictionResultJob.
  def test_activejob_result_job_through_a_sidekiq_server
    aj_queue = ENV["KIT_AJ_QUEUE"]
    relay_queue = ENV["KIT_RELAY_QUEUE"]
    dir = rails_app
    skip "KIT_AJ_QUEUE/KIT_RELAY_QUEUE not set (no sidecar with CALLBACK_CLASS=MaskPredictor::ActiveJobRelay)" unless aj_queue && relay_queue
    bin = begin
      Gem.bin_path("sidekiq", "sidekiq")
    rescue Gem::Exception
      `command -v sidekiq`.strip
    end
    log = File.join(dir, "sidekiq.log")
    env = { "RAILS_ENV" => "test", "MASK_PREDICTOR_QUEUE" => aj_queue }
    pid = Process.spawn(ENV.to_h.merge(env), RbConfig.ruby, bin, "-r", dir, "-q", relay_queue, "-c", "2", "-t", "2",
                        chdir: dir, out: log, err: %i[child out])
    begin
      out, st = ruby_eval(<<~RUBY, env, chdir: dir)
        require "./config/environment"
        print MaskPredictionJob.perform_later(mask_name: "Moldex 2200N95 Medium", mask_id: 4244).provider_job_id
      RUBY
      assert st.success?, out
      raw = wait_until(30) { Sidekiq.redis { |r| r.call("GET", "kit:rails_app:mask:4244") } }
      stored = JSON.parse(raw)
      assert_equal ["Moldex"], stored["predicted_components"]["brand"]
      assert_equal MODEL_VERSION, stored["prediction_model_version"] if MODEL_VERSION
      assert_equal false, stored["prediction_fallback"]
      assert_equal 0, Sidekiq::RetrySet.new.count { |j| j.klass == "MaskPredictor::ActiveJobRelay" }
    ensure
      Process.kill("TERM", pid)
      Process.wait(pid)
      puts File.read(log) unless passed?
    end
  end
end
