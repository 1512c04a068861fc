#!/bin/sh
# Prints a RUBYLIB with Sidekiq 7.3.10's pure-Ruby lib and what it needs (redis-client,
# connection_pool), checked out into DIR (default: /tmp/sidekiq7-rubylib), for
#   SIDEKIQ7_RUBYLIB=$(worker/testdata/e2e/sidekiq7-rubylib.sh) go test -run TestSidekiqWeb ./worker/
# which then also reads the Metrics tab's data with Sidekiq 7's own Metrics::Query.
set -eu
dir=${1:-/tmp/sidekiq7-rubylib}
mkdir -p "$dir"
get() { # repo tag name
  if [ ! -d "$dir/$3/lib" ]; then
    git clone -q --depth 1 --branch "$2" "https://github.com/$1.git" "$dir/$3" >&2
  fi
}
get sidekiq/sidekiq v7.3.10 sidekiq
get redis-rb/redis-client v0.26.4 redis-client
get mperham/connection_pool v2.5.5 connection_pool
echo "$dir/sidekiq/lib:$dir/redis-client/lib:$dir/connection_pool/lib"
