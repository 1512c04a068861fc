# frozen_string_literal: true

# Loaded with RUBYOPT=-r.../without_rails.rb (cmd/maskpredictor/railskit_test.go does, for
# its "without railties" run): this process and its children behave as if Rails
# (railties, ActiveJob, ActiveSupport, …) were not installed, even where they are, so the
# kit's tests cover both setups on one machine. Requiring any of them raises LoadError;
# railties' minitest plugin (which defines a Rails module) is skipped.
module KitWithoutRails
  HIDDEN = %r{\A(rails|railties|active_job|active_support|active_record|active_model|action_[a-z]+)(/|\.rb\z|\z)}.freeze
  HIDDEN_GEMS = %r{/(railties|activejob|activesupport|activerecord|activemodel|action[a-z]+)-\d}.freeze

  def require(path)
    p = path.to_s
    if p.match?(HIDDEN_GEMS)
      return false if p.include?("/minitest/") # a minitest plugin of a hidden gem: not loaded

      raise LoadError, "cannot load such file -- #{p} (hidden: testing the kit without Rails)"
    end
    raise LoadError, "cannot load such file -- #{p} (hidden: testing the kit without Rails)" if p.match?(HIDDEN)

    super
  end
end
Kernel.prepend(KitWithoutRails)
Object.prepend(KitWithoutRails)
