# frozen_string_literal: true

# A minimal Rails application for the kit's tests (kit_test.rb copies the kit's files into
# a copy of it, as the README tells an app to): ActiveJob with the Sidekiq adapter, Zeitwerk.
require "rails"
require "active_job/railtie"
require "sidekiq"

module KitApp
  class Application < Rails::Application
    config.load_defaults Rails::VERSION::STRING.to_f
    config.root = File.expand_path("..", __dir__)
    config.eager_load = true # what production does: every file of app/ must load
    config.logger = Logger.new($stderr, level: :warn)
    config.active_job.queue_adapter = :sidekiq
    config.secret_key_base = "kit-test"
  end
end
