#!/usr/bin/env ruby
# frozen_string_literal: true

# Replays a JSON Lines file of structured CloudEvents (one per line, as
# `audrey-reporting export` writes them, or schemas/examples/*.json) through
# Audrey::Publisher's event methods, the way a config server would have
# called them: each event goes to the method of its type
# (instance_registered, deployment_registered, instance_contacted,
# configuration_started, configuration_ended, parameters_provided,
# deployment_deleted, heartbeat) with the arguments taken from its data and
# its own `time:`. The library gives each event a new id (reports show no
# ids; history does).
#
# Every event keeps its own `source`: one publisher per source in the file.
# `--source NAME` publishes them all as that one config server instead.
#
# The whole file is read and checked first: a line that is not an event the
# library can build (not JSON, an unknown type, an argument breaking the
# contract) stops the run before anything is published. Heartbeats: the
# library keeps only the latest one waiting, so each is flushed before the
# next event, and every heartbeat of the file is published.
#
# Prints `published=<count>` once every event is confirmed by the broker and
# exits 0; exits 1 if an event could not be built or not everything was
# confirmed within --timeout (e.g. no queue bound to the exchange: start
# audrey-reporting first, it declares its queue), 2 on bad arguments.
#
#   ruby examples/replay.rb events.jsonl --url amqp://guest:guest@127.0.0.1:5672/%2f \
#        --exchange audrey.events [--source /configserver/cs-01] [--timeout 30] [-v]

$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
require "audrey/publisher"
require "json"
require "logger"
require "optparse"

options = {
  url: ENV.fetch("AUDREY_AMQP_URL", Audrey::Publisher::DEFAULT_URL),
  exchange: ENV.fetch("AUDREY_EXCHANGE", Audrey::Publisher::DEFAULT_EXCHANGE),
  source: nil,
  timeout: 30.0,
  verbose: false
}

parser = OptionParser.new do |o|
  o.banner = "usage: #{File.basename($PROGRAM_NAME)} FILE.jsonl [options]"
  o.on("--url URL", "broker AMQP URL (default $AUDREY_AMQP_URL or #{Audrey::Publisher::DEFAULT_URL})") { |v| options[:url] = v }
  o.on("--exchange NAME", "topic exchange (default $AUDREY_EXCHANGE or audrey.events)") { |v| options[:exchange] = v }
  o.on("--source NAME", "publish every event as this config server (default: each event's own source)") { |v| options[:source] = v }
  o.on("--timeout SECONDS", Float, "how long to wait for the confirms, at each heartbeat and at the end (default 30)") do |v|
    options[:timeout] = v
  end
  o.on("-v", "--verbose", "log the publishers' state changes") { options[:verbose] = true }
end

begin
  parser.parse!(ARGV)
  raise OptionParser::MissingArgument, "FILE.jsonl" if ARGV.empty?
  raise OptionParser::NeedlessArgument, ARGV.drop(1).join(" ") if ARGV.size > 1

  Audrey::Events.source!(options[:source]) if options[:source]
rescue OptionParser::ParseError, Audrey::InvalidEvent => e
  warn e.message
  warn parser.help
  exit 2
end
path = ARGV.first

# The publisher method and its arguments for one structured CloudEvent
# (a Hash), time included; raises Audrey::InvalidEvent when it cannot be one.
def call_for(event)
  raise Audrey::InvalidEvent, "not a JSON object" unless event.is_a?(Hash)
  raise Audrey::InvalidEvent, "specversion: 1.0 is required, got #{event['specversion'].inspect}" unless event["specversion"] == "1.0"

  raise Audrey::InvalidEvent, "time: the event's time is required" if event["time"].nil?

  data = event["data"]
  raise Audrey::InvalidEvent, "data: a JSON object is required" unless data.is_a?(Hash)

  dig = lambda do |*keys|
    keys.reduce(data) { |h, k| h.is_a?(Hash) ? h[k] : nil }
  end
  deployment = event["deployment"]
  type = event["type"].to_s
  kind, args =
    case type.delete_prefix(Audrey::Events::TYPE_PREFIX)
    when "instance.registered"
      [:instance_registered, { deployment: deployment, deployment_name: dig.call("deployment", "name"),
                               instance: dig.call("instance", "uuid"), assembly: dig.call("instance", "assembly"),
                               provided_parameters: data.fetch("provided_parameters", []),
                               services: data.fetch("services", []) }]
    when "deployment.registered"
      [:deployment_registered, { deployment: deployment, name: dig.call("deployment", "name"), instances: data["instances"] }]
    when "instance.contacted"
      [:instance_contacted, { deployment: deployment, instance: data["instance"], request: data["request"] }]
    when "service.configuration_started"
      [:configuration_started, { deployment: deployment, instance: data["instance"], service: data["service"] }]
    when "service.configuration_ended"
      [:configuration_ended, { deployment: deployment, instance: data["instance"], service: data["service"],
                               return_code: data["return_code"] }]
    when "instance.parameters_provided"
      [:parameters_provided, { deployment: deployment, instance: data["instance"], parameters: data["parameters"] }]
    when "deployment.deleted"
      [:deployment_deleted, { deployment: deployment }]
    when "configserver.heartbeat"
      [:heartbeat, { version: data["version"], interval_seconds: data["interval_seconds"] }]
    else
      raise Audrey::InvalidEvent, "type: not an Audrey event type: #{type.inspect}"
    end
  [kind, args.merge(time: event["time"])]
end

# Read and check everything first.
calls = []
begin
  File.foreach(path).with_index(1) do |line, lineno|
    next if line.strip.empty?

    begin
      event = JSON.parse(line)
      kind, args = call_for(event)
      source = options[:source] || event["source"]
      # the library's own builder checks every argument (and the source)
      Audrey::Events.public_send(kind, source: source, **args)
      calls << [source, kind, args]
    rescue JSON::ParserError, Audrey::InvalidEvent => e
      warn "#{path}:#{lineno}: cannot replay this line: #{e.message.lines.first.chomp}"
      exit 1
    end
  end
rescue SystemCallError => e
  warn "#{path}: #{e.message}"
  exit 1
end

logger = Logger.new($stderr, level: options[:verbose] ? Logger::INFO : Logger::WARN)
publishers = Hash.new do |h, source|
  h[source] = Audrey::Publisher.new(source: source, url: options[:url], exchange: options[:exchange], logger: logger,
                                    max_buffered: [calls.size, 10_000].max, max_buffered_bytes: 1 << 30)
end

ok = true
calls.each do |source, kind, args|
  publisher = publishers[source]
  if kind == :heartbeat
    publisher.heartbeat(**args)
    # a heartbeat still waiting would be replaced by the next one
    ok &&= publisher.flush(timeout: options[:timeout])
  else
    publisher.public_send(kind, **args)
  end
  break unless ok
end
# after a failure, what is still buffered is not waited for again
ok = publishers.values.map { |p| p.close(timeout: ok ? options[:timeout] : 0) }.all? && ok

stats = publishers.values.map(&:stats)
published = stats.sum { |s| s[:published] }
if ok && published == calls.size
  puts "published=#{published}"
  exit 0
else
  warn "not every event was confirmed within #{options[:timeout]} s: #{published} of #{calls.size} confirmed; " \
       "last error: #{stats.map { |s| s[:last_error] }.compact.first || 'none'}"
  exit 1
end
