#!/usr/bin/env bash
# Runs every test of the Ruby publisher with one command; exits non-zero on
# any failure. Installs what is missing (Debian packages ruby, ruby-bunny,
# ruby-sinatra, ruby-webrick; the jsonschema pip package the tests validate
# events with) and starts RabbitMQ if it is not running (it never stops or
# reconfigures a running one: each test run works in a vhost of its own,
# deleted at the end).
#
#   publishers/ruby/test/run.sh                 # every test
#   publishers/ruby/test/run.sh -n /unroutable/ # minitest options pass through
#
# AUDREY_TEST_AMQP (default amqp://guest:guest@127.0.0.1:5672) names another
# broker; AUDREY_TEST_VHOST an existing vhost to use instead of creating one
# with rabbitmqctl.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v ruby >/dev/null || missing+=(ruby)
ruby -e 'require "bunny"' 2>/dev/null || missing+=(ruby-bunny)
ruby -e 'require "sinatra/base"' 2>/dev/null || missing+=(ruby-sinatra)
ruby -e 'require "webrick"' 2>/dev/null || missing+=(ruby-webrick)
if [ -z "${AUDREY_TEST_AMQP:-}" ]; then
  command -v rabbitmq-server >/dev/null || missing+=(rabbitmq-server)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# (Debian's own python3 refuses pip installs unless told otherwise: PEP 668)
python3 -c 'import jsonschema' 2>/dev/null ||
  PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore python3 -m pip install -q jsonschema

if [ -z "${AUDREY_TEST_AMQP:-}" ] && ! rabbitmq-diagnostics -q ping >/dev/null 2>&1; then
  echo "starting RabbitMQ"
  as_root rabbitmq-server -detached >/dev/null 2>&1 || true
  for _ in $(seq 1 90); do
    rabbitmq-diagnostics -q ping >/dev/null 2>&1 && break
    sleep 1
  done
fi

exec ruby -Ilib -Itest -e 'Dir[File.join(Dir.pwd, "test", "*_test.rb")].sort.each { |f| require f }' -- "$@"
