# frozen_string_literal: true

require "json"
require "securerandom"
require "sidekiq"
require_relative "normalize"

# Talks to the maskpredictor sidecar through the Redis that Sidekiq already uses:
# jobs go to the sidecar's Sidekiq queue with the plain Sidekiq client, and predictions
# are read from the sidecar's cache with one GET. No HTTP, no AWS SDK.
module MaskPredictor
  # Settings; see config/initializers/mask_predictor.rb.
  class Config
    # Sidekiq queue the sidecar works (its WORKER_QUEUES). Default "mask_predictions".
    attr_accessor :queue
    # Job class name written in the payload; must be one of the sidecar's WORKER_CLASSES.
    # Default "MaskPredictionJob".
    attr_accessor :job_class
    # How long predict_now waits for the sidecar by default, in seconds.
    attr_accessor :timeout
    # Sidekiq "retry" option of enqueued jobs (true, false or a count). Default true.
    attr_accessor :retry

    def initialize
      @queue = ENV.fetch("MASK_PREDICTOR_QUEUE", "mask_predictions")
      @job_class = "MaskPredictionJob"
      @timeout = Float(ENV.fetch("MASK_PREDICTOR_TIMEOUT", "5"))
      @retry = true
    end
  end

  # A name the sidecar can never predict (it has no tokens). Raised before enqueueing,
  # so it does not end in Sidekiq's dead set.
  class InvalidName < ArgumentError; end

  # A label the sidecar would refuse (its breakdown does not match the name's tokens, or
  # uses a label that is not one of LABELS). Raised before enqueueing, so it does not end in
  # Sidekiq's dead set.
  class InvalidLabel < ArgumentError; end

  # The nine components a token may be labelled with.
  LABELS = %w[brand model size color style strap filter_type valved misc].freeze

  # The argument of the callback job the sidecar pushes after each prediction
  # (its CALLBACK_CLASS): {"jid", "mask_id", "mask_name", "prediction"}.
  class Result
    attr_reader :jid, :mask_id, :mask_name, :prediction

    def initialize(arg)
      arg = JSON.parse(arg) if arg.is_a?(String)
      @jid = arg["jid"]
      @mask_id = arg["mask_id"]
      @mask_name = arg["mask_name"]
      @prediction = arg.fetch("prediction")
    end

    # {"brand" => ["3M"], "model" => ["Aura", "9205+"], ...}: all nine components.
    def components
      prediction.fetch("components")
    end

    def confidence
      prediction["confidence"]
    end

    def model_version
      prediction["model_version"]
    end

    # true when the sidecar answered with its rule-based fallback (no model loaded).
    def fallback?
      prediction["fallback"] == true
    end
  end

  REPLY_PREFIX = "maskpredictor:reply:"
  # The job class MaskPredictor.label pushes: the sidecar stores a job of this class as a
  # label (it must be in the sidecar's WORKER_CLASSES, as it is by default).
  LABEL_JOB_CLASS = "MaskLabelJob"

  module_function

  def config
    @config ||= Config.new
  end

  def configure
    yield config
    config
  end

  # The reference tokenizer (the same split as normalize, without NFKC and case folding).
  def tokenize(name)
    name.to_s.scrub("\uFFFD").split(SEPARATORS).reject(&:empty?)
  end

  # Enqueues one name for the sidecar: it predicts, caches, and pushes the callback job
  # (when it runs with CALLBACK_CLASS). Returns the Sidekiq jid.
  def enqueue(name, mask_id: nil, reply_to: nil)
    check_name!(name)
    arg = { "mask_name" => name.to_s }
    arg["mask_id"] = mask_id unless mask_id.nil?
    arg["reply_to"] = reply_to if reply_to
    push(arg)
  end

  # Enqueues many names as one job (up to the sidecar's 1,000 per job). Returns the jid.
  def enqueue_batch(names, reply_to: nil)
    names = names.map(&:to_s)
    names.each { |n| check_name!(n) }
    arg = { "mask_names" => names }
    arg["reply_to"] = reply_to if reply_to
    push(arg)
  end

  # Stores a label a person gave name (in your admin) in the sidecar: a MaskLabelJob on the
  # sidecar's queue. breakdown is [{token => label}, ...], one Hash per token of name, in
  # order, as the training export writes it (labels may be Strings or Symbols). From then on
  # the sidecar answers name with this label (MaskPredictor.cached shows "source" =>
  # "label"), whatever model serves, and the label is training data for the next model.
  # Labelling a name again replaces its label. Returns the Sidekiq jid.
  #
  #   MaskPredictor.label("3M Aura 9205+ N95",
  #                       [{ "3M" => "brand" }, { "Aura" => "model" }, { "9205+" => "model" },
  #                        { "N95" => "filter_type" }], labelled_by: current_user.email)
  #
  # Raises InvalidLabel (nothing enqueued) when the breakdown's tokens are not the name's
  # tokens or a label is unknown. What the sidecar still refuses (its length limits, a full
  # label store) goes to Sidekiq's dead set with the reason.
  def label(name, breakdown, labelled_by: nil)
    entries = check_label!(name, breakdown)
    args = [name.to_s, entries]
    args << labelled_by.to_s unless labelled_by.nil?
    Sidekiq::Client.push("class" => LABEL_JOB_CLASS, "queue" => config.queue,
                         "args" => args, "retry" => config.retry)
  end

  # The cached prediction of name, or nil. One Redis GET; the answer carries the caller's
  # own tokens, as the sidecar's own cache hits do. model_version: given, an entry of
  # another model version is a miss (after a hot reload the sidecar recomputes them).
  def cached(name, model_version: nil)
    cached_many([name], model_version: model_version).first
  end

  # cached for many names with one MGET; nil for each miss.
  def cached_many(names, model_version: nil)
    return [] if names.empty?

    keys = names.map { |n| cache_key(n) }
    values = Sidekiq.redis { |r| r.call("MGET", *keys) }
    names.zip(values).map do |name, raw|
      next nil if raw.nil?

      answer(name, raw, model_version)
    end
  end

  # Predicts now: enqueues with a reply key and waits up to timeout seconds for the
  # sidecar's answer. Returns the prediction Hash, or nil on timeout (the job still runs
  # and fills the cache). A cache hit answers without a job. When the sidecar refused the
  # job (its limits, a retry: false failure) the Hash is {"mask_name", "jid", "error"}.
  def predict_now(name, timeout: config.timeout, use_cache: true)
    predict_now_many([name], timeout: timeout, use_cache: use_cache).first
  end

  # predict_now for many names: one job for the misses. nil for each name not answered in time.
  def predict_now_many(names, timeout: config.timeout, use_cache: true)
    names = names.map(&:to_s)
    names.each { |n| check_name!(n) }
    out = use_cache ? cached_many(names) : Array.new(names.size)
    missing = out.each_index.select { |i| out[i].nil? }
    return out if missing.empty?

    key = REPLY_PREFIX + SecureRandom.hex(12)
    if missing.size == 1
      enqueue(names[missing.first], reply_to: key)
    else
      enqueue_batch(missing.map { |i| names[i] }, reply_to: key)
    end
    replies = wait_replies(key, missing.size, timeout)
    missing.each_with_index { |i, k| out[i] = replies[k] }
    out
  end

  def check_name!(name)
    raise InvalidName, "no tokens found in mask_name: #{name.inspect}" if normalize(name).empty?
  end

  # The breakdown as [{"token" => "label"}, ...], checked against the name's tokens.
  def check_label!(name, breakdown)
    toks = tokenize(name)
    raise InvalidLabel, "no tokens found in mask_name: #{name.inspect}" if toks.empty?
    unless breakdown.is_a?(Array) && breakdown.all? { |e| e.is_a?(Hash) && e.size == 1 }
      raise InvalidLabel, "breakdown must be an Array of one-entry Hashes [{token => label}, ...]"
    end

    entries = breakdown.map { |e| e.to_a.first.map(&:to_s) }
    if entries.map(&:first) != toks
      raise InvalidLabel, "breakdown tokens #{entries.map(&:first).inspect} are not the tokens of " \
                          "#{name.inspect}: #{toks.inspect}"
    end
    entries.each do |tok, lab|
      raise InvalidLabel, "token #{tok.inspect} has label #{lab.inspect} (known: #{LABELS.join(", ")})" unless LABELS.include?(lab)
    end
    entries.map { |tok, lab| { tok => lab } }
  end

  def push(arg)
    Sidekiq::Client.push("class" => config.job_class, "queue" => config.queue,
                         "args" => [arg], "retry" => config.retry)
  end

  # Applies the cache-hit rule of the sidecar: the entry's labels with the caller's tokens,
  # when both tokenize to the same number of tokens (else a miss). A label ("source" =>
  # "label") answers whatever model_version is asked for, as in the sidecar.
  def answer(name, raw, model_version)
    pred = JSON.parse(raw)
    return nil if model_version && pred["model_version"] != model_version && pred["source"] != "label"

    toks = tokenize(name)
    labels = Array(pred["breakdown"]).map { |h| h.values.first }
    return nil if toks.size != labels.size || toks.empty?

    pred["mask_name"] = name.to_s
    pred["tokens"] = toks
    pred["breakdown"] = toks.zip(labels).map { |t, l| { t => l } }
    comps = pred["components"].transform_values { [] }
    toks.zip(labels).each { |t, l| (comps[l] ||= []) << t }
    pred["components"] = comps
    pred["normalized_name"] = normalize(name)
    pred.delete("marginals")
    pred.delete("marginal_labels")
    pred.delete("alternatives")
    pred.delete("token_confidences") if Array(pred["token_confidences"]).size != toks.size
    pred
  rescue JSON::ParserError
    nil
  end

  def wait_replies(key, count, timeout)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    replies = []
    Sidekiq.redis do |r|
      while replies.size < count
        left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
        break if left <= 0

        wait = [left.ceil, 1].max
        got = if r.respond_to?(:blocking_call) # Sidekiq 7+: redis-client
                r.blocking_call(wait + 1, "BLPOP", key, wait)
              else # Sidekiq 6: redis-rb
                r.blpop(key, timeout: wait)
              end
        replies << JSON.parse(got[1]) if got
      end
      r.call("DEL", key)
    end
    replies
  end

  private_class_method :check_name!, :check_label!, :push, :answer, :wait_replies
end
