# frozen_string_literal: true

# Calls maskpredictor's HTTP API the way the Rails app's service classes
# called the Python service: MaskComponentPredictorService (Flask: JSON
# posted to /predict and /predict_batch with Net::HTTP, /health parsed) and
# MaskComponentPredictorLambdaService (the Lambda envelope: statusCode, body).
# It checks every field those classes read, and that their error paths
# (non-200 → rule fallback) are taken for bad input.
#
#   MASK_PREDICTOR_URL=http://127.0.0.1:8080 ruby rails_client.rb
#
# Exit status 0 when every check passed; one line per check.

require 'net/http'
require 'json'
require 'uri'

PYTHON_SERVICE_URL = ENV.fetch('MASK_PREDICTOR_URL', 'http://localhost:5000')

# The tokenizer of the Rails app (the reference split), for the fallback.
module MaskTokenizer
  def self.tokenize(name)
    name.to_s.split(/[\s\-—,\[\]()]+/).reject(&:empty?)
  end
end

# The Flask-era service class, as it was (logging to a list instead of Rails.logger).
class MaskComponentPredictorService
  LOG = []

  class << self
    def predict(mask_name)
      uri = URI("#{PYTHON_SERVICE_URL}/predict")
      http = Net::HTTP.new(uri.host, uri.port)
      request = Net::HTTP::Post.new(uri.path, 'Content-Type' => 'application/json')
      request.body = { mask_name: mask_name }.to_json
      response = http.request(request)
      if response.code == '200'
        format_result(JSON.parse(response.body))
      else
        LOG << "Mask predictor error: #{response.body}"
        fallback_prediction(mask_name)
      end
    rescue StandardError => e
      LOG << "Mask predictor connection error: #{e.message}"
      fallback_prediction(mask_name)
    end

    def predict_batch(mask_names)
      uri = URI("#{PYTHON_SERVICE_URL}/predict_batch")
      http = Net::HTTP.new(uri.host, uri.port)
      request = Net::HTTP::Post.new(uri.path, 'Content-Type' => 'application/json')
      request.body = { mask_names: mask_names }.to_json
      response = http.request(request)
      if response.code == '200'
        JSON.parse(response.body)['predictions'].map { |pred| format_result(pred) }
      else
        LOG << "Mask predictor batch error: #{response.body}"
        mask_names.map { |name| fallback_prediction(name) }
      end
    rescue StandardError => e
      LOG << "Mask predictor batch connection error: #{e.message}"
      mask_names.map { |name| fallback_prediction(name) }
    end

    def health_check
      uri = URI("#{PYTHON_SERVICE_URL}/health")
      response = Net::HTTP.get_response(uri)
      if response.code == '200'
        JSON.parse(response.body)
      else
        { 'status' => 'error', 'model_loaded' => false }
      end
    rescue StandardError => e
      { 'status' => 'error', 'message' => e.message, 'model_loaded' => false }
    end

    def format_result(result)
      {
        mask_name: result['mask_name'],
        tokens: result['tokens'],
        breakdown: result['breakdown'],
        components: {
          brand: result['components']['brand'],
          model: result['components']['model'],
          size: result['components']['size'],
          color: result['components']['color'],
          style: result['components']['style'],
          strap: result['components']['strap'],
          filter_type: result['components']['filter_type'],
          valved: result['components']['valved'],
          misc: result['components']['misc']
        },
        confidence: result['confidence']
      }
    end

    def fallback_prediction(mask_name)
      tokens = MaskTokenizer.tokenize(mask_name)
      {
        mask_name: mask_name,
        tokens: tokens,
        breakdown: tokens.map { |t| { t => 'misc' } },
        components: {
          brand: tokens.first ? [tokens.first] : [], model: tokens.length > 1 ? [tokens[1]] : [],
          size: [], color: [], style: [], strap: [], filter_type: [], valved: [], misc: tokens[2..-1] || []
        },
        confidence: 0.0,
        fallback: true
      }
    end
  end
end

# The Lambda-era service class's parsing, with POST /invoke standing in for
# Aws::Lambda::Client#invoke (whose payload is the same envelope).
class MaskComponentPredictorLambdaService
  class << self
    def predict(mask_name)
      response = invoke_lambda(mask_name: mask_name)
      if response['statusCode'] == 200
        MaskComponentPredictorService.format_result(JSON.parse(response['body']))
      else
        MaskComponentPredictorService.fallback_prediction(mask_name)
      end
    end

    def predict_batch(mask_names)
      response = invoke_lambda(mask_names: mask_names)
      if response['statusCode'] == 200
        JSON.parse(response['body'])['predictions'].map { |r| MaskComponentPredictorService.format_result(r) }
      else
        mask_names.map { |name| MaskComponentPredictorService.fallback_prediction(name) }
      end
    end

    def invoke_lambda(payload)
      uri = URI("#{PYTHON_SERVICE_URL}/invoke")
      response = Net::HTTP.post(uri, JSON.generate(payload), 'Content-Type' => 'application/json')
      raise "HTTP #{response.code}" unless response.code == '200'

      JSON.parse(response.body)
    end
  end
end

$passed = 0
$failed = 0

def check(what)
  ok = yield
  if ok
    $passed += 1
    puts "ok   #{what}"
  else
    $failed += 1
    puts "FAIL #{what}"
  end
rescue StandardError => e
  $failed += 1
  puts "FAIL #{what}: #{e.class}: #{e.message}"
end

COMPONENTS = %i[brand model size color style strap filter_type valved misc].freeze

# Every field format_result reads, with the types the Rails code relies on.
def check_result(label, r, name)
  check("#{label}: mask_name") { r[:mask_name] == name }
  check("#{label}: tokens") { r[:tokens].is_a?(Array) && !r[:tokens].empty? && r[:tokens].all?(String) }
  check("#{label}: breakdown pairs each token with a label") do
    r[:breakdown].is_a?(Array) && r[:breakdown].length == r[:tokens].length &&
      r[:breakdown].each_with_index.all? { |h, i| h.is_a?(Hash) && h.keys == [r[:tokens][i]] && h.values.first.is_a?(String) }
  end
  check("#{label}: all nine components are arrays") { COMPONENTS.all? { |c| r[:components][c].is_a?(Array) } }
  check("#{label}: components hold exactly the tokens") do
    r[:components].values.flatten.sort == r[:tokens].sort
  end
  check("#{label}: confidence is a Float in (0, 1]") { r[:confidence].is_a?(Float) && r[:confidence] > 0 && r[:confidence] <= 1 }
  check("#{label}: not the client's fallback") { !r.key?(:fallback) }
end

# /health, parsed as health_check does.
health = MaskComponentPredictorService.health_check
check('health: status ok') { health['status'] == 'ok' }
check('health: model_loaded true') { health['model_loaded'] == true }
check('health: model_version') { health['model_version'].is_a?(String) && !health['model_version'].empty? }
check('health: redis') { %w[ok disabled].include?(health['redis']) }

# /predict
name = '3M Aura 9205+ N95'
r = MaskComponentPredictorService.predict(name)
check_result('predict', r, name)
check('predict: 3M is the brand') { r[:components][:brand] == ['3M'] }
check('predict: N95 is the filter type') { r[:components][:filter_type] == ['N95'] }
check('predict: no error logged') { MaskComponentPredictorService::LOG.empty? }

# Again (a cache hit when the server has Redis): the same answer.
again = MaskComponentPredictorService.predict(name)
check('predict again: same result') { again == r }

# Unicode and punctuation survive the round trip.
uname = 'Honeywell DF300 — N95 (Medium/Large), Blue'
check_result('predict unicode', MaskComponentPredictorService.predict(uname), uname)

# /predict_batch
names = ['3M 1860s', 'Zimi ZM9233 w/ Headstraps', 'BreatheTeq - Large']
rs = MaskComponentPredictorService.predict_batch(names)
check('predict_batch: one result per name, in order') { rs.map { |x| x[:mask_name] } == names }
rs.each_with_index { |x, i| check_result("predict_batch[#{i}]", x, names[i]) }
check('predict_batch: empty list') { MaskComponentPredictorService.predict_batch([]) == [] }

# Bad input: a 400 with the old error bodies; the class falls back.
MaskComponentPredictorService::LOG.clear
fb = MaskComponentPredictorService.predict(' - ')
check('no tokens: client falls back') { fb[:fallback] == true }
check('no tokens: server said why') do
  MaskComponentPredictorService::LOG.last == 'Mask predictor error: {"error":"no tokens found in mask_name"}'
end
uri = URI("#{PYTHON_SERVICE_URL}/predict")
res = Net::HTTP.post(uri, '{}', 'Content-Type' => 'application/json')
check('predict without mask_name: 400 mask_name required') do
  res.code == '400' && JSON.parse(res.body) == { 'error' => 'mask_name required' }
end
res = Net::HTTP.post(URI("#{PYTHON_SERVICE_URL}/predict_batch"), '{"mask_name":"x"}', 'Content-Type' => 'application/json')
check('predict_batch without mask_names: 400 mask_names array required') do
  res.code == '400' && JSON.parse(res.body) == { 'error' => 'mask_names array required' }
end

# The Lambda service class's parsing of /invoke.
lr = MaskComponentPredictorLambdaService.predict(name)
check_result('lambda predict', lr, name)
check('lambda predict: same labels as /predict') { lr == r }
lrs = MaskComponentPredictorLambdaService.predict_batch(names)
check('lambda predict_batch: one result per name') { lrs.map { |x| x[:mask_name] } == names }
lrs.each_with_index { |x, i| check_result("lambda predict_batch[#{i}]", x, names[i]) }
env = MaskComponentPredictorLambdaService.invoke_lambda(mask_name: ' ')
check('lambda no tokens: statusCode 400 with the CORS header') do
  env['statusCode'] == 400 && env['headers']['Access-Control-Allow-Origin'] == '*' &&
    JSON.parse(env['body']) == { 'error' => 'no tokens found in mask_name' }
end
check('lambda no tokens: client falls back') { MaskComponentPredictorLambdaService.predict(' ')[:fallback] == true }

puts "rails_client.rb: #{$passed} checks ok, #{$failed} failed"
exit($failed.zero? ? 0 : 1)
