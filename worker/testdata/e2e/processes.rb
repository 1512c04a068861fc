# What an operator or a deploy hook does to the processes on Sidekiq's Busy page, through
# Sidekiq's own API and Web UI (Debian's 6.4.1, or 7.3's source on RUBYLIB), and what they
# then show, as JSON.
#
#   REDIS_URL=redis://127.0.0.1:6379/0 ruby processes.rb ACTION
#
# ACTION: list; quiet (Sidekiq::ProcessSet.new.each(&:quiet!), the common deploy hook);
# stop (each(&:stop!)); busy (GET /busy of Sidekiq::Web: which processes get the
# Quiet/Stop form).
require "json"
require "sidekiq"
require "sidekiq/api"

Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL") } }
Sidekiq.logger.level = Logger::WARN if Sidekiq.respond_to?(:logger)

out = { "version" => Sidekiq::VERSION }
begin
  case ARGV[0]
  when "quiet" then Sidekiq::ProcessSet.new.each(&:quiet!)
  when "stop" then Sidekiq::ProcessSet.new.each(&:stop!)
  when "busy"
    require "sidekiq/web"
    require "rack/mock"
    env = Rack::MockRequest.env_for("/busy")
    env["rack.session"] = {}
    status, _headers, body = Sidekiq::Web.call(env)
    html = +""
    body.each { |b| html << b }
    out["status"] = status
    # The per-process Quiet/Stop form carries the identity in a hidden input.
    out["forms"] = html.scan(/<input type="hidden" name="identity" value="([^"]*)"/).flatten
    out["embedded_labels"] = html.scan(/label-default">embedded</).size
  end
rescue => e
  out["error"] = "#{e.class}: #{e.message}"
end
ps = Sidekiq::ProcessSet.new
out["processes"] = ps.map do |p|
  { "identity" => p.identity, "quiet" => p["quiet"], "stopping" => p.stopping?,
    "embedded" => p["embedded"], "busy" => p["busy"], "concurrency" => p["concurrency"] }
end
out["total_concurrency"] = ps.total_concurrency
out["workers_size"] = Sidekiq::Workers.new.size
out["work"] = []
Sidekiq::Workers.new.each { |process, thread, _work| out["work"] << [process, thread] }
puts JSON.generate(out)
