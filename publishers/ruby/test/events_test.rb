# frozen_string_literal: true

require_relative "test_helper"

# The event builders, without a broker: every event they build validates
# against schemas/events.schema.json, and arguments that break the contract
# are refused.
class EventsTest < Minitest::Test
  E = Audrey::Events
  SRC = "/configserver/cs-01"

  def setup
    @dep = SecureRandom.uuid
    @mysql = SecureRandom.uuid
    @wp = SecureRandom.uuid
  end

  def all_events
    [
      E.instance_registered(source: SRC, deployment: @dep, deployment_name: "blog", instance: @wp, assembly: "wordpress",
                            provided_parameters: [], services: [
                              { name: "http", parameters: [] },
                              { name: "wordpress", parameters: [
                                { name: "wp_name", kind: :static, value: "secret" },
                                { name: "mysql_ip", kind: :parameter_reference, assembly: @mysql, parameter: "ipaddress" },
                                { "name" => "mysql_done", "kind" => "service-reference", "assembly" => @mysql, "service" => "mysql" }
                              ] }
                            ]),
      E.instance_registered(source: SRC, deployment: @dep, deployment_name: "blog", instance: @mysql, assembly: "mysql",
                            provided_parameters: %w[ipaddress hostname], services: [{ name: "mysql" }]),
      E.deployment_registered(source: SRC, deployment: @dep, name: "blog", instances: [@mysql, @wp]),
      E.instance_contacted(source: SRC, deployment: @dep, instance: @mysql, request: "GET /configs"),
      E.instance_contacted(source: SRC, deployment: @dep, instance: @mysql),
      E.configuration_started(source: SRC, deployment: @dep, instance: @mysql, service: "mysql"),
      E.configuration_ended(source: SRC, deployment: @dep, instance: @mysql, service: "mysql", return_code: 0),
      E.configuration_ended(source: SRC, deployment: @dep, instance: @mysql, service: "mysql", return_code: -2_147_483_648),
      E.parameters_provided(source: SRC, deployment: @dep, instance: @mysql, parameters: %w[ipaddress hostname]),
      E.parameters_provided(source: SRC, deployment: @dep, instance: @mysql, parameters: { "ipaddress" => "10.0.0.5" }),
      E.deployment_deleted(source: SRC, deployment: @dep),
      E.heartbeat(source: SRC, version: "0.4.2", interval_seconds: 30)
    ]
  end

  def test_every_builder_produces_an_event_the_schema_accepts
    events = all_events
    errors = TestSupport.schema_errors(events.map { |e| JSON.generate(e) })
    events.zip(errors).each do |event, errs|
      assert_empty errs, "#{event['type']} invalid: #{errs.inspect}"
    end
    assert_equal E::TYPES.values.sort, events.map { |e| e["type"] }.uniq.sort
  end

  def test_the_validator_itself_accepts_the_examples_and_refuses_the_invalid_samples
    dir = File.expand_path("../../../schemas", __dir__)
    good = Dir[File.join(dir, "examples", "*.json")].sort
    bad = Dir[File.join(dir, "invalid", "*.json")].sort
    refute_empty good
    refute_empty bad
    results = TestSupport.schema_errors((good + bad).map { |f| File.read(f) })
    results.first(good.size).zip(good).each { |errs, f| assert_empty errs, f }
    results.drop(good.size).zip(bad).each { |errs, f| refute_empty errs, "#{f} should be refused" }
  end

  def test_envelope
    e = E.configuration_ended(source: SRC, deployment: @dep, instance: @mysql, service: "mysql", return_code: 3)
    assert_equal "1.0", e["specversion"]
    assert_match E::UUID, e["id"]
    assert_equal SRC, e["source"]
    assert_equal "org.aeolusproject.audrey.service.configuration_ended", e["type"]
    assert_match(/\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\z/, e["time"])
    assert_equal "application/json", e["datacontenttype"]
    assert_equal @dep, e["deployment"]
    assert_equal({ "instance" => @mysql, "service" => "mysql", "return_code" => 3 }, e["data"])
    refute_equal e["id"], E.deployment_deleted(source: SRC, deployment: @dep)["id"]
  end

  def test_time_is_utc_with_milliseconds
    t = Time.new(2026, 11, 25, 16, 2, 11.5r, "+02:00")
    e = E.deployment_deleted(source: SRC, deployment: @dep, time: t)
    assert_equal "2026-11-25T14:02:11.500Z", e["time"]
  end

  def test_heartbeat_has_no_deployment
    e = E.heartbeat(source: SRC, version: "1.2.3", interval_seconds: 5)
    refute e.key?("deployment")
    assert_equal({ "version" => "1.2.3", "interval_seconds" => 5 }, e["data"])
  end

  def test_static_values_and_unknown_keys_are_not_published
    e = all_events.first
    params = e["data"]["services"][1]["parameters"]
    assert_equal({ "name" => "wp_name", "kind" => "static" }, params[0])
    assert_equal "parameter-reference", params[1]["kind"]
    refute_includes JSON.generate(e), "secret"
    pp = E.parameters_provided(source: SRC, deployment: @dep, instance: @mysql, parameters: { "ipaddress" => "10.0.0.5" })
    refute_includes JSON.generate(pp), "10.0.0.5"
  end

  def test_duplicates_in_sets_are_merged
    e = E.instance_registered(source: SRC, deployment: @dep, deployment_name: "blog", instance: @mysql, assembly: "mysql",
                              provided_parameters: %w[ipaddress ipaddress], services: [])
    assert_equal ["ipaddress"], e["data"]["provided_parameters"]
    d = E.deployment_registered(source: SRC, deployment: @dep, name: "blog", instances: [@mysql, @mysql.upcase])
    assert_equal [@mysql], d["data"]["instances"]
  end

  def test_arguments_breaking_the_contract_are_refused
    bad = [
      -> { E.instance_contacted(source: SRC, deployment: "not-a-uuid", instance: @mysql) },
      -> { E.instance_contacted(source: SRC, deployment: @dep, instance: "{#{@mysql}}") },
      -> { E.instance_contacted(source: SRC, deployment: @dep, instance: @mysql.delete("-")) },
      -> { E.instance_contacted(source: SRC, deployment: @dep, instance: @mysql, request: "GET\n/configs") },
      -> { E.instance_contacted(source: "", deployment: @dep, instance: @mysql) },
      -> { E.configuration_started(source: SRC, deployment: @dep, instance: @mysql, service: "") },
      -> { E.configuration_started(source: SRC, deployment: @dep, instance: @mysql, service: "a/b") },
      -> { E.configuration_started(source: SRC, deployment: @dep, instance: @mysql, service: "x" * 256) },
      -> { E.configuration_started(source: SRC, deployment: @dep, instance: @mysql, service: "tab\there") },
      -> { E.configuration_ended(source: SRC, deployment: @dep, instance: @mysql, service: "s", return_code: "0") },
      -> { E.configuration_ended(source: SRC, deployment: @dep, instance: @mysql, service: "s", return_code: 1.0) },
      -> { E.configuration_ended(source: SRC, deployment: @dep, instance: @mysql, service: "s", return_code: 2**31) },
      -> { E.parameters_provided(source: SRC, deployment: @dep, instance: @mysql, parameters: []) },
      -> { E.deployment_registered(source: SRC, deployment: @dep, name: "blog", instances: []) },
      -> { E.heartbeat(source: SRC, version: "1", interval_seconds: 0) },
      -> { E.heartbeat(source: SRC, version: "", interval_seconds: 30) },
      -> { E.deployment_deleted(source: SRC, deployment: @dep, time: "2026-11-25 14:00:00Z") },
      -> { E.instance_registered(source: SRC, deployment: @dep, deployment_name: "blog", instance: @wp, assembly: "wp",
                                 services: [{ name: "s", parameters: [{ name: "p", kind: "parameter-reference", assembly: @mysql }] }]) },
      -> { E.instance_registered(source: SRC, deployment: @dep, deployment_name: "blog", instance: @wp, assembly: "wp",
                                 services: [{ name: "s", parameters: [{ name: "p", kind: "magic" }] }]) }
    ]
    bad.each_with_index do |call, i|
      assert_raises(Audrey::InvalidEvent, "case #{i}") { call.call }
    end
    assert_operator Audrey::InvalidEvent, :<, ArgumentError
  end
end
