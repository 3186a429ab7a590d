# frozen_string_literal: true

require_relative "test_helper"

# The examples: the wordpress + mysql driver (used by end-to-end tests of
# the service) and the Sinatra config server.
class ExamplesTest < BrokerTest
  DRIVER = File.join(TestSupport::ROOT, "examples", "wordpress_mysql.rb")
  SERVER = File.join(TestSupport::ROOT, "examples", "config_server.rb")
  T = "org.aeolusproject.audrey."

  def test_the_wordpress_mysql_driver_publishes_the_whole_lifecycle_and_exits_0
    bind_queue
    dep = uuid
    mysql = uuid
    wp = uuid
    out, err, status = Open3.capture3("ruby", DRIVER, "--url", url, "--exchange", @exchange,
                                      "--deployment", dep, "--mysql", mysql, "--wordpress", wp, "--timeout", "20")
    assert status.success?, "driver failed: #{err}"
    lines = out.lines.map(&:chomp)
    assert_equal ["deployment=#{dep}", "mysql=#{mysql}", "wordpress=#{wp}"], lines.first(3)
    published = lines.grep(/\Apublished=/).first.to_s.split("=").last.to_i

    got = take(published)
    assert_equal published, got.size
    assert_equal 0, queue_depth
    assert_empty TestSupport.schema_errors(got.map(&:last)).flatten
    events = got.map { |_d, _p, body| JSON.parse(body) }
    lifecycle = events.reject { |e| e["type"].end_with?("heartbeat") }
    assert_operator events.size - lifecycle.size, :>=, 1, "at least one heartbeat"
    assert_equal [
      ["instance.registered", mysql], ["instance.registered", wp], ["deployment.registered"],
      ["instance.contacted", mysql], ["instance.contacted", wp], ["instance.parameters_provided", mysql],
      ["service.configuration_started", mysql, "mysql"], ["service.configuration_ended", mysql, "mysql"],
      ["service.configuration_started", wp, "http"], ["service.configuration_ended", wp, "http"],
      ["service.configuration_started", wp, "wordpress"], ["service.configuration_ended", wp, "wordpress"]
    ], lifecycle.map { |e|
      d = e["data"]
      inst = d["instance"].is_a?(Hash) ? d["instance"]["uuid"] : d["instance"]
      [e["type"].delete_prefix(T), inst, d["service"]].compact
    }
    assert(lifecycle.all? { |e| e["deployment"] == dep })
    times = lifecycle.map { |e| e["time"] }
    assert_equal times.sort, times
    assert_equal times.uniq, times, "each event at its own instant"
    wordpress_service = lifecycle[1]["data"]["services"].find { |s| s["name"] == "wordpress" }
    assert_includes wordpress_service["parameters"],
                    { "name" => "mysql_ip", "kind" => "parameter-reference", "assembly" => mysql, "parameter" => "ipaddress" }
    assert_includes wordpress_service["parameters"],
                    { "name" => "mysql_done", "kind" => "service-reference", "assembly" => mysql, "service" => "mysql" }
    assert_equal %w[ipaddress hostname], lifecycle[0]["data"]["provided_parameters"]
    assert_equal %w[ipaddress hostname], lifecycle[5]["data"]["parameters"]
    assert(lifecycle.select { |e| e["type"].end_with?("ended") }.all? { |e| e["data"]["return_code"].zero? })
  end

  def test_the_driver_prints_new_uuids_and_fails_when_nothing_can_be_delivered
    # no queue bound: every event is unroutable
    out, err, status = Open3.capture3("ruby", DRIVER, "--url", url, "--exchange", @exchange, "--timeout", "1")
    assert_equal 1, status.exitstatus
    assert_match(/not every event was confirmed/, err)
    %w[deployment mysql wordpress].each { |k| assert_match(/^#{k}=[0-9a-f-]{36}$/, out) }
  end

  def test_the_config_server_calls_the_publisher_in_each_handler
    begin
      require "rack/mock"
      load SERVER
    rescue LoadError => e
      skip "Sinatra is not installed (apt-get install ruby-sinatra): #{e.message}"
    end
    bind_queue
    pub = publisher
    ConfigServer.set :publisher, pub
    app = Rack::MockRequest.new(ConfigServer.new)
    dep = uuid
    mysql = uuid
    wp = uuid
    json = ->(h) { { input: JSON.generate(h), "CONTENT_TYPE" => "application/json" } }

    assert_equal 200, app.put("/configs/1/#{mysql}", json.call(
      "deployment" => { "uuid" => dep, "name" => "blog" }, "assembly" => "mysql",
      "provided_parameters" => %w[ipaddress hostname], "services" => [{ "name" => "mysql", "parameters" => [] }]
    )).status
    assert_equal 200, app.put("/configs/1/#{wp}", json.call(
      "deployment" => { "uuid" => dep, "name" => "blog" }, "assembly" => "wordpress", "provided_parameters" => [],
      "services" => [{ "name" => "http", "parameters" => [] },
                     { "name" => "wordpress", "parameters" => [
                       { "name" => "wp_pw", "kind" => "static", "value" => "s3cret" },
                       { "name" => "mysql_ip", "kind" => "parameter-reference", "assembly" => mysql, "parameter" => "ipaddress" },
                       { "name" => "mysql_done", "kind" => "service-reference", "assembly" => mysql, "service" => "mysql" }
                     ] }]
    )).status
    assert_equal 200, app.put("/deployments/1/#{dep}", json.call("name" => "blog", "instances" => [mysql, wp])).status
    assert_equal 202, app.get("/configs/1/#{wp}").status, "wordpress waits for mysql"
    assert_equal 200, app.get("/configs/1/#{mysql}").status
    assert_equal({ "parameters" => %w[ipaddress hostname] }, JSON.parse(app.get("/params/1/#{mysql}").body))
    assert_equal 200, app.put("/params/1/#{mysql}", json.call("ipaddress" => "10.0.0.5", "hostname" => "db")).status
    assert_equal 200, app.put("/services/1/#{mysql}/mysql", json.call("return_code" => 0)).status
    assert_equal 200, app.put("/services/1/#{wp}/http", json.call("return_code" => 0)).status
    configs = app.get("/configs/1/#{wp}")
    assert_equal 200, configs.status
    assert_equal "10.0.0.5", JSON.parse(configs.body)["services"][1]["parameters"]["mysql_ip"]
    assert_equal 200, app.put("/services/1/#{wp}/wordpress", json.call("return_code" => 1)).status
    assert_equal 200, app.get("/files/1/#{wp}").status
    assert_equal 404, app.get("/configs/1/#{uuid}").status
    assert_equal 400, app.put("/services/1/#{wp}/wordpress", json.call("return_code" => "zero")).status
    assert_equal 204, app.delete("/deployments/1/#{dep}").status
    assert_equal 0, JSON.parse(app.get("/audrey-publisher").body)["dropped"]

    assert pub.flush(timeout: 10)
    got = take(pub.published)
    assert_empty TestSupport.schema_errors(got.map(&:last)).flatten
    events = got.map { |_d, _p, b| JSON.parse(b) }
    assert_equal %w[
      instance.registered instance.registered deployment.registered
      instance.contacted service.configuration_started
      instance.contacted service.configuration_started
      instance.contacted instance.parameters_provided service.configuration_ended service.configuration_ended
      instance.contacted service.configuration_started service.configuration_ended
      instance.contacted deployment.deleted
    ], events.map { |e| e["type"].delete_prefix(T) }
    refute(got.any? { |_d, _p, b| b.include?("s3cret") || b.include?("10.0.0.5") }, "values never published")
    assert_equal [%w[wp http], %w[mysql mysql], %w[wp wordpress]],
                 events.select { |e| e["type"].end_with?("started") }.map { |e| [e["data"]["instance"] == wp ? "wp" : "mysql", e["data"]["service"]] }
  end
end
