# Pushes N MaskPredictionJob jobs with Ruby's Sidekiq client through Redis Sentinel, the
# way a Rails app configured with `config.redis = { url: "redis://mymaster", sentinels: [...] }`
# does (Sidekiq 6 / redis-rb 4; Sidekiq 7+ takes `name: "mymaster"` instead of the URL).
#
#   SENTINELS=127.0.0.1:26379,... MASTER=mymaster N=20000 RATE=2500 ruby sentinel_push.rb
#
# PASSWORD is the data nodes' password, SENTINEL_PASSWORD the sentinels' (redis-rb 4 takes
# it per sentinel).
#
# Groups of 100 pushes, each group followed by WAIT 1 on the same connection: a group is
# "confirmed" when a replica acknowledged it (a failover cannot drop it), else "unconfirmed"
# (its pushes may be lost with the old primary). Every push has its own jid; a group whose
# push failed (the primary went away) is pushed again with the same jids ("retried": one
# jid may then be queued twice). One JSON line per group on stdout:
#   {"jids": [[jid, name], ...], "confirmed": true|false, "retried": true|false}
require "json"
require "sidekiq"

sentinels = ENV.fetch("SENTINELS").split(",").map do |hp|
  host, port = hp.split(":")
  s = { host: host, port: Integer(port) }
  s[:password] = ENV["SENTINEL_PASSWORD"] unless ENV["SENTINEL_PASSWORD"].to_s.empty?
  s
end
redis = { url: "redis://#{ENV.fetch("MASTER")}", sentinels: sentinels, role: :master, size: 1,
          connect_timeout: 0.5, read_timeout: 2, reconnect_attempts: 0 }
redis[:password] = ENV["PASSWORD"] unless ENV["PASSWORD"].to_s.empty?
Sidekiq.configure_client { |c| c.redis = redis }
Sidekiq.logger.level = Logger::WARN
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)
$stdout.sync = true

n = Integer(ENV.fetch("N"))
rate = Float(ENV.fetch("RATE", "2500"))
brands = %w[3M Moldex Honeywell Kimberly-Clark Makrite Powecom Zimi GVS Dentec Vitacore]
filters = %w[N95 KN95 FFP2 P100 KF94]
start = Time.now
(0...n).each_slice(100) do |idx|
  group = idx.map do |i|
    [SecureRandom.hex(12), "#{brands[i % brands.size]} Failover#{i / 7}-#{i} #{filters[i % filters.size]}", i]
  end
  retried = false
  confirmed = false
  begin
    Sidekiq.redis do |conn|
      group.each do |jid, name, i|
        Sidekiq::Client.push("class" => "MaskPredictionJob", "queue" => "mask_predictions",
                             "args" => [name, i], "jid" => jid)
      end
      confirmed = conn.call([:wait, 1, 250]).to_i >= 1
    end
  rescue Redis::BaseConnectionError, Redis::CommandError => e
    warn "push failed (#{e.class}: #{e.message}); again"
    retried = true
    sleep 0.2
    retry
  end
  puts JSON.generate({ "jids" => group.map { |jid, name, _| [jid, name] }, "confirmed" => confirmed, "retried" => retried })
  ahead = (idx.last + 1) / rate - (Time.now - start)
  sleep ahead if ahead > 0
end
