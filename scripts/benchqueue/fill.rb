# Pre-fills a queue the way Rails would, with Sidekiq::Client.push_bulk.
#   REDIS_URL=... ruby fill.rb CLASS QUEUE NAMES.json
require "json"
require "sidekiq"

Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL"), size: 2 } }
klass, queue, file = ARGV
names = JSON.parse(File.read(file, encoding: "UTF-8"))
names.each_slice(1000).with_index do |slice, s|
  Sidekiq::Client.push_bulk("class" => klass, "queue" => queue,
                            "args" => slice.each_with_index.map { |n, i| [n, s * 1000 + i + 1] })
end
