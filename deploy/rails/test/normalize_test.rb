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

  def test_cache_key
    assert_equal "maskpredictor:prediction:3m aura 9205+ n95", MaskPredictor.cache_key("3M Aura—9205+ N95")
  end

  def test_nil_and_non_utf8
    assert_equal "", MaskPredictor.normalize(nil)
    assert_equal "stra\u00dfe".unicode_normalize(:nfkc).downcase(:fold),
                 MaskPredictor.normalize("Stra\xDFe".dup.force_encoding(Encoding::ISO_8859_1))
  end
end
