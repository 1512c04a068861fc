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
    # The sidecar's limits, checked here before anything is enqueued so that a name or a
    # batch it would refuse never becomes a dead job: the longest name in characters (its
    # --max-chars, default 1000), the most tokens in a name (its --max-tokens, default 100)
    # and the most names in one job (1000). Set them to what the sidecar runs with; nil
    # skips a check (the sidecar still refuses, and predict_now raises Rejected at once).
    attr_accessor :max_chars, :max_tokens, :max_names
    # The ActiveJob class MaskPredictor::ActiveJobRelay hands each callback to, when the
    # sidecar runs with CALLBACK_CLASS=MaskPredictor::ActiveJobRelay. Default
    # "MaskPredictionResultJob".
    attr_accessor :result_job

    def initialize
      @queue = ENV.fetch("MASK_PREDICTOR_QUEUE", "mask_predictions")
      @job_class = "MaskPredictionJob"
      @timeout = Float(ENV.fetch("MASK_PREDICTOR_TIMEOUT", "5"))
      @retry = true
      @max_chars = 1000
      @max_tokens = 100
      @max_names = 1000
      @result_job = "MaskPredictionResultJob"
    end
  end

  # Every error the kit raises on purpose is a MaskPredictor::Error, except the argument
  # errors below, which are ArgumentErrors (and MaskPredictor::Error too).
  module Error; end

  # A name the sidecar can never predict: no tokens, or over the limits (config.max_chars,
  # config.max_tokens). Raised before enqueueing, so it does not end in Sidekiq's dead set.
  class InvalidName < ArgumentError
    include Error
  end

  # More names in one job than the sidecar takes (config.max_names, 1000). Raised before
  # enqueueing; send them in slices.
  class TooManyNames < ArgumentError
    include Error
  end

  # A label the sidecar would refuse (its breakdown does not match the name's tokens, or
  # uses a label that is not one of LABELS, or the name is over the limits). Raised before
  # enqueueing, so it does not end in Sidekiq's dead set.
  class InvalidLabel < ArgumentError
    include Error
  end

  # The sidecar refused the job predict_now / predict_now_many was waiting for and said why
  # (its error reply {"mask_name", "jid", "error"}): the job is in Sidekiq's dead set with
  # the same reason (or was dropped, with retry: false). Raised as soon as the reply
  # arrives, not after the timeout. #reason is the sidecar's message, #jid the job's,
  # #mask_names the names the job carried.
  class Rejected < StandardError
    include Error
    attr_reader :reason, :jid, :mask_names

    def initialize(reason, jid: nil, mask_names: [])
      @reason = reason
      @jid = jid
      @mask_names = mask_names
      super("maskpredictor refused job #{jid}: #{reason}")
    end
  end

  # Sidekiq's Redis connection is namespaced (redis-namespace): the sidecar would never see
  # the jobs. Raised at boot by the initializer (and by the first call of the kit).
  class NamespacedRedis < StandardError
    include Error
  end

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

  # Enqueues many names as one job (up to the sidecar's 1,000 per job, config.max_names;
  # more raise TooManyNames). Returns the jid.
  def enqueue_batch(names, reply_to: nil)
    names = names.map(&:to_s)
    check_count!(names.size)
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
  # tokens, a label is unknown, the name is over the limits or labelled_by over 200 bytes.
  # What the sidecar still refuses (a full label store) goes to Sidekiq's dead set with the
  # reason.
  def label(name, breakdown, labelled_by: nil)
    entries = check_label!(name, breakdown)
    args = [name.to_s, entries]
    unless labelled_by.nil?
      raise InvalidLabel, "labelled_by is #{labelled_by.to_s.bytesize} bytes, over the limit of 200" if labelled_by.to_s.bytesize > 200

      args << labelled_by.to_s
    end
    check_redis!
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

    check_redis!
    keys = names.map { |n| cache_key(n) }
    values = Sidekiq.redis { |r| r.call("MGET", *keys) }
    names.zip(values).map do |name, raw|
      next nil if raw.nil?

      answer(name, raw, model_version)
    end
  end

  # Predicts now: enqueues with a reply key and waits up to timeout seconds for the
  # sidecar's answer. Returns the prediction Hash, or nil on timeout (the job still runs
  # and fills the cache). A cache hit answers without a job. Raises InvalidName before
  # enqueueing a name the sidecar would refuse (no tokens, over config.max_chars or
  # config.max_tokens), and Rejected as soon as the sidecar refuses the job anyway (its
  # reply says why; the job is in Sidekiq's dead set), instead of waiting out the timeout.
  def predict_now(name, timeout: config.timeout, use_cache: true)
    predict_now_many([name], timeout: timeout, use_cache: use_cache).first
  end

  # predict_now for many names: one job for the misses (at most config.max_names of them,
  # else TooManyNames before enqueueing). nil for each name not answered in time; raises
  # InvalidName and Rejected as predict_now does (the job is one unit: the sidecar refuses
  # all of its names or none).
  def predict_now_many(names, timeout: config.timeout, use_cache: true)
    names = names.map(&:to_s)
    names.each { |n| check_name!(n) }
    out = use_cache ? cached_many(names) : Array.new(names.size)
    missing = out.each_index.select { |i| out[i].nil? }
    return out if missing.empty?

    check_count!(missing.size)
    key = REPLY_PREFIX + SecureRandom.hex(12)
    sent = missing.map { |i| names[i] }
    jid = if missing.size == 1
            enqueue(sent.first, reply_to: key)
          else
            enqueue_batch(sent, reply_to: key)
          end
    replies = wait_replies(key, missing.size, timeout, jid, sent)
    missing.each_with_index { |i, k| out[i] = replies[k] }
    out
  end

  # Why the sidecar would refuse name (no tokens, over config.max_chars or
  # config.max_tokens), or nil when it would take it. No Redis call.
  def invalid_name_reason(name)
    s = name.to_s
    s = s.encode(Encoding::UTF_8) unless s.encoding == Encoding::UTF_8
    s = s.scrub("\uFFFD")
    if config.max_chars && s.length > config.max_chars
      return "mask_name is #{s.length} characters, over the limit of #{config.max_chars}"
    end

    toks = tokenize(s)
    return "no tokens found in mask_name: #{name.inspect}" if toks.empty?
    if config.max_tokens && toks.size > config.max_tokens
      return "mask_name has #{toks.size} tokens, over the limit of #{config.max_tokens}"
    end

    nil
  rescue EncodingError => e
    "mask_name is not valid text: #{e.message}"
  end

  # Raises NamespacedRedis when Sidekiq's Redis connection is namespaced (the redis-namespace
  # gem, Sidekiq 6's `namespace:` option): the sidecar reads and writes Sidekiq's keys without
  # a namespace, so the app's jobs would wait forever on keys it never reads. The
  # initializer calls it at boot; every call of the kit checks once per process too.
  def check_redis!
    return if @redis_ok

    ns = Sidekiq.redis { |c| c.respond_to?(:namespace) ? c.namespace : nil }
    if ns
      raise NamespacedRedis,
            "Sidekiq's Redis connection uses the namespace #{ns.to_s.inspect} (redis-namespace), which the " \
            "maskpredictor sidecar does not support: it works queue:#{config.queue} and writes its cache, " \
            "callback jobs and replies without a namespace, so jobs enqueued here would wait forever. " \
            "Remove the namespace: option from Sidekiq's redis config (Sidekiq 7 dropped it too) and move " \
            "the app's Sidekiq data to a Redis database of its own (redis://host:6379/N) if it must stay " \
            "apart; see the kit's README, \"redis-namespace\"."
    end
    @redis_ok = true
  end

  # Forgets that check_redis! passed (after Sidekiq's redis config changed).
  def recheck_redis!
    @redis_ok = false
  end

  def check_name!(name)
    reason = invalid_name_reason(name)
    raise InvalidName, reason if reason
  end

  def check_count!(count)
    return unless config.max_names && count > config.max_names

    raise TooManyNames, "#{count} mask names in one job, over the limit of #{config.max_names}: send them in slices"
  end

  # The breakdown as [{"token" => "label"}, ...], checked against the name's tokens.
  def check_label!(name, breakdown)
    reason = invalid_name_reason(name)
    raise InvalidLabel, reason if reason

    toks = tokenize(name)
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
    check_redis!
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

  # Waits for count replies on key; raises Rejected at the first error reply (the sidecar
  # pushes one per name of a refused job, all with the same reason).
  def wait_replies(key, count, timeout, jid, names)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    replies = []
    rejected = nil
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
        next unless got

        reply = JSON.parse(got[1])
        if reply.is_a?(Hash) && reply.key?("error") && !reply.key?("components")
          rejected = Rejected.new(reply["error"].to_s, jid: reply["jid"] || jid, mask_names: names)
          break
        end
        replies << reply
      end
    ensure
      r.call("DEL", key)
    end
    raise rejected if rejected

    replies
  end

  private_class_method :check_name!, :check_count!, :check_label!, :push, :answer, :wait_replies
end
