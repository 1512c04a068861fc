# frozen_string_literal: true

# MaskPredictor.normalize: the name part of the maskpredictor cache key.
#
# The Go sidecar stores every prediction under
#   "maskpredictor:prediction:" + MaskPredictor.normalize(name)
# so Rails can read it with one GET. This is the same function as the Go
# predictor.Normalize: Unicode NFKC, full case folding, then the reference
# tokenizer (split on [\s\-—,\[\]()]+ where \s is Unicode whitespace plus
# U+001C..U+001F, as Python's re has it), tokens joined by one space.
# Both implementations are tested against testdata/normalize_vectors.json.
#
#   require "mask_predictor/normalize"
#   MaskPredictor.normalize("３Ｍ Aura—9205+")   # => "3m aura 9205+"
#   MaskPredictor.cache_key("3M Aura 9205+")    # => "maskpredictor:prediction:3m aura 9205+"
module MaskPredictor
  CACHE_KEY_PREFIX = "maskpredictor:prediction:"

  # Ruby's \s is ASCII only, so the whitespace is spelled out: Unicode
  # White_Space (what Go's unicode.IsSpace reports) plus the information
  # separators U+001C..U+001F that Python's str.isspace also counts.
  WHITESPACE = "\t\n\v\f\r \u001C-\u001F\u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000"
  # The compatibility forms whose NFKC is a separator also separate (the Go
  # tokenizer's rule since issue 14): full-width （）－，［］, the small forms
  # ﹙﹚﹐﹣﹘, the vertical forms ︵︶︐︱﹇﹈ and super/subscript ⁽⁾₍₎, so a
  # name tokenizes as its NFKC form does.
  COMPAT_SEPARATORS = "\uFF08\uFF09\uFF0C\uFF0D\uFF3B\uFF3D\uFE59\uFE5A\uFE50\uFE63\uFE58" \
                      "\uFE35\uFE36\uFE10\uFE31\uFE47\uFE48\u207D\u207E\u208D\u208E"
  SEPARATORS = Regexp.new("[#{WHITESPACE}#{COMPAT_SEPARATORS}\\-\u2014,\\[\\]()]+")

  module_function

  # normalize(name) -> String; "" when the name has no tokens.
  def normalize(name)
    s = name.to_s
    s = s.encode(Encoding::UTF_8) unless s.encoding == Encoding::UTF_8
    s = s.scrub("\uFFFD")
    s.unicode_normalize(:nfkc).downcase(:fold).split(SEPARATORS).reject(&:empty?).join(" ")
  end

  # cache_key(name) -> the Redis key the sidecar writes the prediction under.
  def cache_key(name)
    CACHE_KEY_PREFIX + normalize(name)
  end
end
