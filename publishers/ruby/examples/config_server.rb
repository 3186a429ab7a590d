#!/usr/bin/env ruby
# frozen_string_literal: true

# A tiny Audrey-like config server (Sinatra) that publishes what it observes
# through Audrey::Publisher: one call in each request handler.
#
# It keeps everything in memory and speaks JSON instead of the original's
# XML and signed requests: it shows where the calls go, not how to store
# configs. The paths follow the original's (`/configs`, `/params`, with an
# API version segment).
#
#   Conductor                                         publishes
#   PUT    /configs/:v/:instance   instance-config    instance.registered
#   PUT    /deployments/:v/:uuid   every config in    deployment.registered
#   DELETE /deployments/:v/:uuid   deployment gone    deployment.deleted
#   Agent (identified by its instance uuid)
#   GET    /configs/:v/:instance   fetch configs      instance.contacted, then
#                                                     service.configuration_started for each
#                                                     service whose parameters are all resolved
#                                                     (200 all resolved, 202 come back later)
#   GET    /params/:v/:instance    what to provide    instance.contacted
#   PUT    /params/:v/:instance    provided values    instance.parameters_provided (names only)
#   PUT    /services/:v/:instance/:service
#                                  exit code          service.configuration_ended
#   GET    /files/:v/:instance     fetch files        instance.contacted
#   Operator
#   GET    /audrey-publisher       the publisher's stats (published, buffered, dropped, last_error, ...)
#
# Run it (Debian: apt-get install ruby-sinatra ruby-webrick):
#   AUDREY_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f \
#   AUDREY_SOURCE=/configserver/cs-01 AUDREY_SPOOL=/tmp/cs-01-events.jsonl \
#   PORT=4567 ruby examples/config_server.rb
#
# An instance-config (PUT /configs/1/<instance uuid>):
#   {"deployment": {"uuid": "<deployment uuid>", "name": "blog"},
#    "assembly": "wordpress",
#    "provided_parameters": [],
#    "services": [{"name": "wordpress", "parameters": [
#       {"name": "wp_name", "kind": "static", "value": "blog"},
#       {"name": "mysql_ip", "kind": "parameter-reference", "assembly": "<mysql uuid>", "parameter": "ipaddress"},
#       {"name": "mysql_done", "kind": "service-reference", "assembly": "<mysql uuid>", "service": "mysql"}]}]}

$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
require "audrey/publisher"
require "json"
require "sinatra/base"

class ConfigServer < Sinatra::Base
  # An instance as Conductor registered it, and what its agent reported.
  Instance = Struct.new(:uuid, :deployment, :deployment_name, :assembly, :provided_parameters, :services,
                        :provided, :return_codes, :started, keyword_init: true)

  set :publisher, nil # an Audrey::Publisher, set before the app runs
  set :show_exceptions, false
  set :raise_errors, false

  STORE = {}
  LOCK = Mutex.new

  helpers do
    def publisher
      settings.publisher
    end

    def json_body
      JSON.parse(request.body.read)
    rescue JSON::ParserError
      halt 400, "body is not JSON\n"
    end

    def instance!(uuid)
      LOCK.synchronize { STORE[uuid] } || halt(404, "no instance #{uuid}\n")
    end

    def resolved?(param)
      source = LOCK.synchronize { STORE[param["assembly"]] }
      case param["kind"]
      when "parameter-reference" then source&.provided&.key?(param["parameter"])
      when "service-reference" then source&.return_codes&.key?(param["service"])
      else true
      end
    end

    def value_of(param)
      source = LOCK.synchronize { STORE[param["assembly"]] }
      case param["kind"]
      when "parameter-reference" then source.provided[param["parameter"]]
      when "service-reference" then source.return_codes[param["service"]]
      else param["value"]
      end
    end
  end

  # An event that breaks the contract (a service name with a '/', say) is
  # the caller's mistake: refuse the request rather than publish it.
  error Audrey::InvalidEvent do
    status 400
    "#{env['sinatra.error'].message}\n"
  end

  # ---- Conductor -----------------------------------------------------------

  put "/configs/:version/:uuid" do
    config = json_body
    instance = Instance.new(uuid: params[:uuid], deployment: config.dig("deployment", "uuid"),
                            deployment_name: config.dig("deployment", "name"), assembly: config["assembly"],
                            provided_parameters: config["provided_parameters"] || [], services: config["services"] || [],
                            provided: {}, return_codes: {}, started: [])
    publisher.instance_registered(deployment: instance.deployment, deployment_name: instance.deployment_name,
                                  instance: instance.uuid, assembly: instance.assembly,
                                  provided_parameters: instance.provided_parameters, services: instance.services)
    LOCK.synchronize { STORE[instance.uuid] = instance } # re-posting replaces
    status 200
  end

  put "/deployments/:version/:uuid" do
    body = json_body
    publisher.deployment_registered(deployment: params[:uuid], name: body["name"], instances: body["instances"])
    status 200
  end

  delete "/deployments/:version/:uuid" do
    publisher.deployment_deleted(deployment: params[:uuid])
    LOCK.synchronize { STORE.delete_if { |_uuid, i| i.deployment == params[:uuid] } }
    status 204
  end

  # ---- the agent -----------------------------------------------------------

  get "/configs/:version/:uuid" do
    instance = instance!(params[:uuid])
    publisher.instance_contacted(deployment: instance.deployment, instance: instance.uuid, request: "GET /configs")
    pending = false
    services = instance.services.map do |service|
      parameters = service["parameters"] || []
      if parameters.all? { |p| resolved?(p) }
        first_time = LOCK.synchronize { !instance.started.include?(service["name"]) && instance.started << service["name"] }
        if first_time
          # the agent now has everything this service needs: it runs it
          publisher.configuration_started(deployment: instance.deployment, instance: instance.uuid, service: service["name"])
        end
        { "name" => service["name"], "parameters" => parameters.to_h { |p| [p["name"], value_of(p)] } }
      else
        pending = true
        nil
      end
    end
    status pending ? 202 : 200
    content_type :json
    JSON.generate("services" => services.compact)
  end

  get "/params/:version/:uuid" do
    instance = instance!(params[:uuid])
    publisher.instance_contacted(deployment: instance.deployment, instance: instance.uuid, request: "GET /params")
    content_type :json
    JSON.generate("parameters" => instance.provided_parameters - instance.provided.keys)
  end

  put "/params/:version/:uuid" do
    instance = instance!(params[:uuid])
    values = json_body
    halt 400, "no parameters\n" unless values.is_a?(Hash) && !values.empty?

    # names only: the values stay here
    publisher.parameters_provided(deployment: instance.deployment, instance: instance.uuid, parameters: values.keys)
    LOCK.synchronize { instance.provided.merge!(values) }
    missing = instance.provided_parameters - instance.provided.keys
    status missing.empty? ? 200 : 202
    content_type :json
    JSON.generate("parameters" => missing)
  end

  put "/services/:version/:uuid/:service" do
    instance = instance!(params[:uuid])
    code = json_body["return_code"]
    halt 400, "return_code: an integer is required\n" unless code.is_a?(Integer)

    publisher.configuration_ended(deployment: instance.deployment, instance: instance.uuid, service: params[:service],
                                  return_code: code)
    LOCK.synchronize { instance.return_codes[params[:service]] = code }
    status 200
  end

  get "/files/:version/:uuid" do
    instance = instance!(params[:uuid])
    publisher.instance_contacted(deployment: instance.deployment, instance: instance.uuid, request: "GET /files")
    content_type "application/x-tar"
    ""
  end

  # ---- the operator --------------------------------------------------------

  get "/audrey-publisher" do
    content_type :json
    JSON.generate(publisher.stats)
  end
end

if $PROGRAM_NAME == __FILE__
  publisher = Audrey::Publisher.new(
    source: ENV.fetch("AUDREY_SOURCE", "/configserver/example"),
    url: ENV.fetch("AUDREY_AMQP_URL", Audrey::Publisher::DEFAULT_URL),
    exchange: ENV.fetch("AUDREY_EXCHANGE", Audrey::Publisher::DEFAULT_EXCHANGE),
    spool_path: ENV.fetch("AUDREY_SPOOL", "./audrey-events.jsonl"),
    version: "example-config-server/#{Audrey::Publisher::VERSION}"
  )
  publisher.start_heartbeats(interval_seconds: Integer(ENV.fetch("AUDREY_HEARTBEAT_SECONDS", "30")))
  # what is not confirmed within 10 s stays in the spool for the next start
  at_exit { publisher.close(timeout: 10) }
  ConfigServer.set :publisher, publisher
  ConfigServer.run!(port: Integer(ENV.fetch("PORT", "4567")), bind: ENV.fetch("BIND", "127.0.0.1"))
end
