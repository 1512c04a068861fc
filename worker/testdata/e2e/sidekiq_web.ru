# Sidekiq Web (Debian's ruby-sidekiq 6.4.1) on the test's Redis, served by Debian's puma
# for worker/sidekiqweb_chromium_test.go:
#
#   REDIS_URL=redis://127.0.0.1:6379/0 puma -b tcp://127.0.0.1:9292 sidekiq_web.ru
#
# Sidekiq::Web 6.x keeps its CSRF token in the Rack session and brings no session
# middleware of its own: the app must add one.
require "securerandom"
require "sidekiq"
require "sidekiq/web"

Sidekiq.configure_client { |c| c.redis = { url: ENV.fetch("REDIS_URL"), size: 5 } }

use Rack::Session::Cookie, secret: ENV.fetch("SESSION_SECRET") { SecureRandom.hex(64) },
                           same_site: true, max_age: 86_400
run Sidekiq::Web
