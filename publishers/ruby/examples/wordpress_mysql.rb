#!/usr/bin/env ruby
# frozen_string_literal: true

# Plays a config server through the lifecycle of a two-instance deployment,
# wordpress + mysql, by calling Audrey::Publisher directly, the way a config
# server's request handlers would:
#
#   1. heartbeats start (the config server is up);
#   2. Conductor posts both instance-configs (instance.registered x2), then
#      the deployment is complete (deployment.registered);
#   3. each agent fetches its configs (instance.contacted, GET /configs);
#   4. mysql's agent puts back ipaddress and hostname
#      (instance.parameters_provided);
#   5. mysql's service `mysql` starts and ends with 0;
#   6. wordpress's `http` starts and ends with 0, then `wordpress` (whose
#      parameters reference mysql's ipaddress and mysql's service `mysql`)
#      starts and ends with 0;
#   7. heartbeats stop; everything is flushed.
#
# Prints, on stdout, before publishing:
#   deployment=<uuid>
#   mysql=<uuid>
#   wordpress=<uuid>
# and, once every event is confirmed by the broker, `published=<count>`
# (heartbeats included). Exits 0 only when every event was confirmed within
# --timeout, 1 otherwise (e.g. no queue bound to the exchange: start
# audrey-reporting first, it declares its queue), 2 on bad arguments.
#
#   ruby examples/wordpress_mysql.rb --url amqp://guest:guest@127.0.0.1:5672/%2f
#   ruby examples/wordpress_mysql.rb --deployment 3c9e8f2a-5b1d-4c7e-9f10-2a6b8d4e1c53 \
#        --mysql 0b6a4d1e-7c2f-4a8b-9e3d-5f1a2b3c4d5e --wordpress 9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d

$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
require "audrey/publisher"
require "logger"
require "optparse"
require "securerandom"

options = {
  url: ENV.fetch("AUDREY_AMQP_URL", Audrey::Publisher::DEFAULT_URL),
  exchange: ENV.fetch("AUDREY_EXCHANGE", Audrey::Publisher::DEFAULT_EXCHANGE),
  source: "/configserver/wordpress-mysql-example",
  name: "blog",
  deployment: nil,
  mysql: nil,
  wordpress: nil,
  heartbeat_interval: 30,
  timeout: 30.0,
  step: 0.005,
  spool: nil,
  verbose: false
}

parser = OptionParser.new do |o|
  o.banner = "usage: #{File.basename($PROGRAM_NAME)} [options]"
  o.on("--url URL", "broker AMQP URL (default $AUDREY_AMQP_URL or #{Audrey::Publisher::DEFAULT_URL})") { |v| options[:url] = v }
  o.on("--exchange NAME", "topic exchange (default $AUDREY_EXCHANGE or audrey.events)") { |v| options[:exchange] = v }
  o.on("--source NAME", "CloudEvents source (default #{options[:source]})") { |v| options[:source] = v }
  o.on("--name NAME", "deployment name (default blog)") { |v| options[:name] = v }
  o.on("--deployment UUID", "deployment uuid (default: a new one)") { |v| options[:deployment] = v }
  o.on("--mysql UUID", "mysql instance uuid (default: a new one)") { |v| options[:mysql] = v }
  o.on("--wordpress UUID", "wordpress instance uuid (default: a new one)") { |v| options[:wordpress] = v }
  o.on("--heartbeat-interval SECONDS", Integer, "heartbeat interval (default 30)") { |v| options[:heartbeat_interval] = v }
  o.on("--timeout SECONDS", Float, "how long to wait for every confirm (default 30)") { |v| options[:timeout] = v }
  o.on("--step SECONDS", Float, "pause between events, so that their times differ (default 0.005)") { |v| options[:step] = v }
  o.on("--spool PATH", "spool file (default: none, memory only)") { |v| options[:spool] = v }
  o.on("-v", "--verbose", "log the publisher's state changes") { options[:verbose] = true }
end

begin
  parser.parse!(ARGV)
  raise OptionParser::InvalidArgument, ARGV.join(" ") unless ARGV.empty?

  %i[deployment mysql wordpress].each do |k|
    options[k] ||= SecureRandom.uuid
    raise OptionParser::InvalidArgument, "--#{k} #{options[k]}: not a UUID" unless options[k].match?(Audrey::Events::UUID)
  end
rescue OptionParser::ParseError => e
  warn e.message
  warn parser.help
  exit 2
end

dep = options[:deployment]
mysql = options[:mysql]
wordpress = options[:wordpress]
puts "deployment=#{dep}"
puts "mysql=#{mysql}"
puts "wordpress=#{wordpress}"
$stdout.flush

logger = Logger.new($stderr, level: options[:verbose] ? Logger::INFO : Logger::WARN)
publisher = Audrey::Publisher.new(source: options[:source], url: options[:url], exchange: options[:exchange],
                                  spool_path: options[:spool], logger: logger,
                                  version: "wordpress-mysql-example/#{Audrey::Publisher::VERSION}")
step = -> { sleep(options[:step]) if options[:step].positive? }

# 1. the config server is up
publisher.start_heartbeats(interval_seconds: options[:heartbeat_interval])
step.call

# 2. Conductor posts the instance-configs, then the deployment is complete
publisher.instance_registered(deployment: dep, deployment_name: options[:name], instance: mysql, assembly: "mysql",
                              provided_parameters: %w[ipaddress hostname],
                              services: [{ name: "mysql", parameters: [{ name: "mysql_root_pw", kind: "static" }] }])
step.call
publisher.instance_registered(deployment: dep, deployment_name: options[:name], instance: wordpress, assembly: "wordpress",
                              provided_parameters: [],
                              services: [
                                { name: "http", parameters: [] },
                                { name: "wordpress", parameters: [
                                  { name: "wp_name", kind: "static" },
                                  { name: "wp_user", kind: "static" },
                                  { name: "wp_pw", kind: "static" },
                                  { name: "mysql_ip", kind: "parameter-reference", assembly: mysql, parameter: "ipaddress" },
                                  { name: "mysql_done", kind: "service-reference", assembly: mysql, service: "mysql" }
                                ] }
                              ])
step.call
publisher.deployment_registered(deployment: dep, name: options[:name], instances: [mysql, wordpress])
step.call

# 3. both agents boot and fetch their configs
publisher.instance_contacted(deployment: dep, instance: mysql, request: "GET /configs")
step.call
publisher.instance_contacted(deployment: dep, instance: wordpress, request: "GET /configs")
step.call

# 4. mysql reports its provided parameters
publisher.parameters_provided(deployment: dep, instance: mysql, parameters: %w[ipaddress hostname])
step.call

# 5. mysql's service runs
publisher.configuration_started(deployment: dep, instance: mysql, service: "mysql")
step.call
publisher.configuration_ended(deployment: dep, instance: mysql, service: "mysql", return_code: 0)
step.call

# 6. wordpress's services run, now that mysql's ipaddress and service are known
%w[http wordpress].each do |service|
  publisher.configuration_started(deployment: dep, instance: wordpress, service: service)
  step.call
  publisher.configuration_ended(deployment: dep, instance: wordpress, service: service, return_code: 0)
  step.call
end

# 7. done: stop the heartbeats and wait for every confirm
publisher.stop_heartbeats
ok = publisher.close(timeout: options[:timeout])
stats = publisher.stats
if ok
  puts "published=#{stats[:published]}"
  exit 0
else
  warn "not every event was confirmed within #{options[:timeout]} s: #{stats[:buffered]} still buffered; " \
       "last error: #{stats[:last_error] || 'none'}"
  exit 1
end
