# frozen_string_literal: true

# Loaded after config/initializers/mask_predictor.rb (alphabetical order), as in most apps.
# KIT_SIDEKIQ_NAMESPACE: the redis-namespace setup the kit must refuse.
redis = { url: ENV.fetch("REDIS_URL") }
redis[:namespace] = ENV["KIT_SIDEKIQ_NAMESPACE"] if ENV["KIT_SIDEKIQ_NAMESPACE"]
Sidekiq.configure_client { |c| c.redis = redis }
Sidekiq.configure_server { |c| c.redis = redis }
