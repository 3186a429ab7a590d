# frozen_string_literal: true

require "json"
require "securerandom"
require "time"

module Audrey
  # Raised when an event cannot be built because an argument breaks the
  # event contract (`schemas/events.schema.json`): a malformed UUID, an empty
  # name or one with a `/` or a control character, a return code that is not
  # a 32-bit integer, ... Such an event would be dead-lettered by
  # audrey-reporting, so it is refused here, in the caller's thread, before
  # anything is buffered.
  class InvalidEvent < ArgumentError; end

  # Builds CloudEvents 1.0 (structured JSON) exactly as
  # `schemas/events.schema.json` describes them. Pure functions: no I/O, no
  # state. Every builder returns a Hash with String keys, ready for
  # `JSON.generate`, and raises {InvalidEvent} on bad input.
  #
  #   Audrey::Events.configuration_ended(
  #     source: "/configserver/cs-01", deployment: dep, instance: inst,
  #     service: "mysql", return_code: 0)
  #   # => {"specversion"=>"1.0", "id"=>"…uuid…", "source"=>"/configserver/cs-01",
  #   #     "type"=>"org.aeolusproject.audrey.service.configuration_ended",
  #   #     "time"=>"2026-11-25T14:03:47.123Z", "datacontenttype"=>"application/json",
  #   #     "deployment"=>dep, "data"=>{"instance"=>inst, "service"=>"mysql", "return_code"=>0}}
  module Events
    # Prefix of every event type (and routing key).
    TYPE_PREFIX = "org.aeolusproject.audrey."

    # The event types, by the short name used in this library.
    TYPES = {
      instance_registered: "#{TYPE_PREFIX}instance.registered",
      deployment_registered: "#{TYPE_PREFIX}deployment.registered",
      instance_contacted: "#{TYPE_PREFIX}instance.contacted",
      configuration_started: "#{TYPE_PREFIX}service.configuration_started",
      configuration_ended: "#{TYPE_PREFIX}service.configuration_ended",
      parameters_provided: "#{TYPE_PREFIX}instance.parameters_provided",
      deployment_deleted: "#{TYPE_PREFIX}deployment.deleted",
      heartbeat: "#{TYPE_PREFIX}configserver.heartbeat"
    }.freeze

    HEARTBEAT_TYPE = TYPES.fetch(:heartbeat)

    # Parameter kinds, as the schema spells them.
    PARAM_KINDS = %w[static parameter-reference service-reference].freeze

    UUID = /\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\z/.freeze
    NAME_FORBIDDEN = %r{[\u0000-\u001f\u007f/]}.freeze
    CONTROL = /[\u0000-\u001f\u007f]/.freeze
    RFC3339 = /\A[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])\z/.freeze

    INT32 = (-2_147_483_648..2_147_483_647).freeze
    MAX_LIST = 256

    module_function

    # Conductor posted an instance's config (`instance-config`).
    #
    # services: an Array of `{name:, parameters: [...]}` (Symbol or String
    # keys); each parameter is `{name:, kind:}` plus, for a
    # `"parameter-reference"`, `assembly:` (the source INSTANCE uuid, as in
    # Audrey) and `parameter:`, and for a `"service-reference"`, `assembly:`
    # and `service:`. `kind` may also be a Symbol (`:parameter_reference`).
    # Any other key (a static parameter's `value`, say) is left out: values
    # never leave the config server.
    def instance_registered(source:, deployment:, deployment_name:, instance:, assembly:,
                            provided_parameters: [], services: [], time: nil, id: nil)
      dep = uuid!(deployment, "deployment")
      data = {
        "deployment" => { "uuid" => dep, "name" => name!(deployment_name, "deployment_name") },
        "instance" => { "uuid" => uuid!(instance, "instance"), "assembly" => name!(assembly, "assembly") },
        "provided_parameters" => name_list!(provided_parameters, "provided_parameters", unique: true),
        "services" => list!(services, "services").each_with_index.map { |s, i| service!(s, "services[#{i}]") }
      }
      envelope(:instance_registered, source: source, deployment: dep, data: data, time: time, id: id)
    end

    # Conductor has posted the configs of every instance of the deployment;
    # `instances` is the expected set of instance uuids (at least one).
    def deployment_registered(source:, deployment:, name:, instances:, time: nil, id: nil)
      dep = uuid!(deployment, "deployment")
      ids = list!(instances, "instances", max: 10_000).map { |u| uuid!(u, "instances[]") }.uniq { |u| u.downcase }
      raise InvalidEvent, "instances: at least one instance uuid is required" if ids.empty?

      data = { "deployment" => { "uuid" => dep, "name" => name!(name, "name") }, "instances" => ids }
      envelope(:deployment_registered, source: source, deployment: dep, data: data, time: time, id: id)
    end

    # An agent request reached the config server (any request is a contact).
    # `request` is informational, e.g. "GET /configs".
    def instance_contacted(source:, deployment:, instance:, request: nil, time: nil, id: nil)
      data = { "instance" => uuid!(instance, "instance") }
      unless request.nil?
        r = string!(request, "request")
        raise InvalidEvent, "request: 1 to 1024 characters without control characters" if r.empty? || r.length > 1024 || r.match?(CONTROL)

        data["request"] = r
      end
      envelope(:instance_contacted, source: source, deployment: uuid!(deployment, "deployment"), data: data, time: time, id: id)
    end

    # The agent fetched a service's config with every parameter resolved.
    def configuration_started(source:, deployment:, instance:, service:, time: nil, id: nil)
      data = { "instance" => uuid!(instance, "instance"), "service" => name!(service, "service") }
      envelope(:configuration_started, source: source, deployment: uuid!(deployment, "deployment"), data: data, time: time, id: id)
    end

    # The agent put a service's exit code back (0 success, anything else an error).
    def configuration_ended(source:, deployment:, instance:, service:, return_code:, time: nil, id: nil)
      unless return_code.is_a?(Integer) && INT32.cover?(return_code)
        raise InvalidEvent, "return_code: a signed 32-bit Integer is required, got #{return_code.inspect}"
      end

      data = { "instance" => uuid!(instance, "instance"), "service" => name!(service, "service"), "return_code" => return_code }
      envelope(:configuration_ended, source: source, deployment: uuid!(deployment, "deployment"), data: data, time: time, id: id)
    end

    # The agent put provided parameters back: names only, never values.
    # Accepts an Array of names or a Hash of name => value (values dropped).
    def parameters_provided(source:, deployment:, instance:, parameters:, time: nil, id: nil)
      names = parameters.is_a?(Hash) ? parameters.keys.map(&:to_s) : parameters
      names = name_list!(names, "parameters", unique: false)
      raise InvalidEvent, "parameters: at least one parameter name is required" if names.empty?

      data = { "instance" => uuid!(instance, "instance"), "parameters" => names }
      envelope(:parameters_provided, source: source, deployment: uuid!(deployment, "deployment"), data: data, time: time, id: id)
    end

    # Conductor deleted the deployment.
    def deployment_deleted(source:, deployment:, time: nil, id: nil)
      dep = uuid!(deployment, "deployment")
      envelope(:deployment_deleted, source: source, deployment: dep, data: { "deployment" => dep }, time: time, id: id)
    end

    # Liveness of the config server named by `source`; carries no deployment.
    def heartbeat(source:, version:, interval_seconds:, time: nil, id: nil)
      v = string!(version, "version")
      raise InvalidEvent, "version: 1 to 64 characters without control characters" if v.empty? || v.length > 64 || v.match?(CONTROL)
      unless interval_seconds.is_a?(Integer) && (1..86_400).cover?(interval_seconds)
        raise InvalidEvent, "interval_seconds: an Integer from 1 to 86400 is required, got #{interval_seconds.inspect}"
      end

      envelope(:heartbeat, source: source, deployment: nil,
                           data: { "version" => v, "interval_seconds" => interval_seconds }, time: time, id: id)
    end

    # RFC 3339 UTC with milliseconds, e.g. "2026-11-25T14:00:01.250Z".
    def format_time(time)
      time.getutc.strftime("%Y-%m-%dT%H:%M:%S.%LZ")
    end

    # The CloudEvents envelope around `data`.
    def envelope(kind, source:, deployment:, data:, time:, id:)
      event = {
        "specversion" => "1.0",
        "id" => id.nil? ? SecureRandom.uuid : id!(id),
        "source" => source!(source),
        "type" => TYPES.fetch(kind),
        "time" => time!(time),
        "datacontenttype" => "application/json"
      }
      event["deployment"] = deployment unless deployment.nil?
      event["data"] = data
      event
    end

    # -- argument checks (the schema's rules) --------------------------------

    def string!(value, what)
      s = value.is_a?(Symbol) ? value.to_s : value
      raise InvalidEvent, "#{what}: a String is required, got #{value.inspect}" unless s.is_a?(String)

      s = s.encode(Encoding::UTF_8)
      raise InvalidEvent, "#{what}: not valid UTF-8" unless s.valid_encoding?

      s
    rescue EncodingError => e
      raise InvalidEvent, "#{what}: #{e.message}"
    end

    def uuid!(value, what)
      s = string!(value, what)
      raise InvalidEvent, "#{what}: a hyphenated UUID is required, got #{value.inspect}" unless s.match?(UUID)

      s
    end

    def name!(value, what)
      s = string!(value, what)
      if s.empty? || s.length > 255 || s.match?(NAME_FORBIDDEN)
        raise InvalidEvent, "#{what}: a name is 1 to 255 characters without control characters or '/', got #{value.inspect}"
      end

      s
    end

    def source!(value)
      s = string!(value, "source")
      raise InvalidEvent, "source: 1 to 255 characters, got #{value.inspect}" if s.empty? || s.length > 255

      s
    end

    def id!(value)
      s = string!(value, "id")
      raise InvalidEvent, "id: 1 to 255 characters, got #{value.inspect}" if s.empty? || s.length > 255

      s
    end

    def time!(value)
      case value
      when nil then format_time(Time.now)
      when Time then format_time(value)
      when String
        raise InvalidEvent, "time: RFC 3339 with an offset is required, got #{value.inspect}" unless value.match?(RFC3339)

        value
      else
        raise InvalidEvent, "time: a Time or an RFC 3339 String is required, got #{value.inspect}"
      end
    end

    def list!(value, what, max: MAX_LIST)
      raise InvalidEvent, "#{what}: an Array is required, got #{value.inspect}" unless value.is_a?(Array)
      raise InvalidEvent, "#{what}: at most #{max} items, got #{value.size}" if value.size > max

      value
    end

    def name_list!(value, what, unique:)
      names = list!(value, what).map { |n| name!(n, "#{what}[]") }
      unique ? names.uniq : names
    end

    def service!(service, what)
      raise InvalidEvent, "#{what}: a Hash {name:, parameters:} is required" unless service.is_a?(Hash)

      params = fetch(service, :parameters) || []
      {
        "name" => name!(fetch(service, :name), "#{what}.name"),
        "parameters" => list!(params, "#{what}.parameters").each_with_index.map { |p, i| param!(p, "#{what}.parameters[#{i}]") }
      }
    end

    def param!(param, what)
      raise InvalidEvent, "#{what}: a Hash {name:, kind:, ...} is required" unless param.is_a?(Hash)

      kind = fetch(param, :kind)
      kind = kind.to_s.tr("_", "-") if kind.is_a?(Symbol) || kind.is_a?(String)
      raise InvalidEvent, "#{what}.kind: one of #{PARAM_KINDS.join(', ')}, got #{fetch(param, :kind).inspect}" unless PARAM_KINDS.include?(kind)

      out = { "name" => name!(fetch(param, :name), "#{what}.name"), "kind" => kind }
      case kind
      when "parameter-reference"
        out["assembly"] = uuid!(fetch(param, :assembly), "#{what}.assembly")
        out["parameter"] = name!(fetch(param, :parameter), "#{what}.parameter")
      when "service-reference"
        out["assembly"] = uuid!(fetch(param, :assembly), "#{what}.assembly")
        out["service"] = name!(fetch(param, :service), "#{what}.service")
      end
      out
    end

    def fetch(hash, key)
      hash.key?(key) ? hash[key] : hash[key.to_s]
    end
  end
end
