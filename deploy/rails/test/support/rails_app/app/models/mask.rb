# frozen_string_literal: true

# A stand-in for the app's ActiveRecord model: what the result job writes goes to the Redis
# key kit:rails_app:mask:<id>, where the test reads it.
class Mask
  Rel = Struct.new(:id) do
    def update_all(attrs)
      Sidekiq.redis { |r| r.call("SET", "kit:rails_app:mask:#{id}", JSON.generate(attrs)) }
      1
    end
  end

  def self.where(id:)
    Rel.new(id)
  end
end
