# frozen_string_literal: true

# Runs MaskPredictor.normalize against the shared vectors file.
#   ruby deploy/rails/test/normalize_test.rb [path/to/normalize_vectors.json]
require "json"
require "minitest/autorun"
require_relative "../mask_predictor/normalize"

VECTORS_PATH = ENV["NORMALIZE_VECTORS"] ||
               File.expand_path("../../../testdata/normalize_vectors.json", __dir__)

class NormalizeTest < Minitest::Test
  VECTORS = JSON.parse(File.read(VECTORS_PATH, encoding: "UTF-8"))["vectors"]

  def test_vectors_present
    assert_operator VECTORS.size, :>=, 20
  end

  VECTORS.each_with_index do |v, i|
    define_method("test_vector_#{i}") do
      got = MaskPredictor.normalize(v["name"])
      assert_equal v["normalized"], got, "#{v["note"]}: #{v["name"].inspect}"
    end
  end

  def test_idempotent
    VECTORS.each do |v|
      n = v["normalized"]
      assert_equal n, MaskPredictor.normalize(n), v["note"]
    end
  end

  # Full-width and other compatibility separators split as their NFKC
  # forms do, so a name's tokens are those of the string normalize splits
  # (the Go tokenizer's rule, issue 14).
  def test_compat_separators_split
    { "Honeywell（DF300）N95" => %w[Honeywell DF300 N95],
      "3M－8210，N95" => %w[3M 8210 N95],
      "Moldex［2200］﹙N95﹚" => %w[Moldex 2200 N95] }.each do |name, toks|
      assert_equal toks, name.split(MaskPredictor::SEPARATORS).reject(&:empty?), name
      assert_equal toks.size, MaskPredictor.normalize(name).split(" ").size, name
    end
  end

  def test_cache_key
    assert_equal "maskpredictor:prediction:3m aura 9205+ n95", MaskPredictor.cache_key("3M Aura—9205+ N95")
  end

  def test_nil_and_non_utf8
    assert_equal "", MaskPredictor.normalize(nil)
    assert_equal "stra\u00dfe".unicode_normalize(:nfkc).downcase(:fold),
                 MaskPredictor.normalize("Stra\xDFe".dup.force_encoding(Encoding::ISO_8859_1))
  end
end
