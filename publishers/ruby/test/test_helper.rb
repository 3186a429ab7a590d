# frozen_string_literal: true

# Shared by the tests: a vhost of their own on the real broker, uniquely
# named exchanges and queues, a schema validator and a TCP proxy that plays
# a broker going away and coming back.
#
# Environment:
#   AUDREY_TEST_AMQP   broker base URL, without vhost (default amqp://guest:guest@127.0.0.1:5672)
#   AUDREY_TEST_VHOST  use this existing vhost instead of creating (and deleting) one with rabbitmqctl

require "minitest/autorun"
require "json"
require "logger"
require "open3"
require "securerandom"
require "socket"
require "stringio"
require "tmpdir"
require "uri"

$LOAD_PATH.unshift(File.expand_path("../lib", __dir__))
require "audrey/publisher"

module TestSupport
  ROOT = File.expand_path("..", __dir__)                       # publishers/ruby
  SCHEMA = File.expand_path("../../schemas/events.schema.json", ROOT)
  BASE_URL = ENV.fetch("AUDREY_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672")
  ALL_EVENTS = "org.aeolusproject.audrey.#"

  # ---- the vhost: one per test process, created on first use -------------

  @vhost = nil
  @vhost_lock = Mutex.new

  def self.rabbitmqctl(*args)
    out, status = Open3.capture2e("rabbitmqctl", "-q", *args)
    raise "rabbitmqctl #{args.join(' ')} failed: #{out}" unless status.success?

    out
  end

  def self.vhost
    @vhost_lock.synchronize do
      return @vhost if @vhost

      if ENV["AUDREY_TEST_VHOST"]
        @vhost = ENV["AUDREY_TEST_VHOST"]
      else
        name = "audrey-ruby-publisher-test-#{SecureRandom.hex(4)}"
        rabbitmqctl("add_vhost", name)
        # deleted after the run whatever its outcome
        Minitest.after_run { rabbitmqctl("delete_vhost", name) rescue warn("could not delete vhost #{name}") }
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        @vhost = name
      end
      @vhost
    end
  end

  def self.url(port: nil)
    uri = URI(BASE_URL)
    uri.port = port if port
    uri.path = "/#{URI.encode_www_form_component(vhost)}"
    uri.to_s
  end

  # A TCP port on 127.0.0.1 where nothing listens (connections refused).
  def self.closed_port
    server = TCPServer.new("127.0.0.1", 0)
    port = server.addr[1]
    server.close
    port
  end

  # ---- schema validation (Python's jsonschema) ----------------------------

  VALIDATOR = <<~PY
    import json, sys
    from jsonschema import Draft202012Validator
    schema = json.load(open(sys.argv[1]))
    v = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    out = []
    for body in json.load(sys.stdin):
        try:
            ev = json.loads(body)
        except Exception as e:
            out.append(["not JSON: %s" % e]); continue
        errs = ["%s: %s" % ("/".join(map(str, e.absolute_path)), e.message) for e in v.iter_errors(ev)]
        # the decoder's extra rule (not expressible in the schema)
        if isinstance(ev, dict) and ev.get("type", "").endswith((".instance.registered", ".deployment.registered")):
            d = ev.get("data", {}).get("deployment", {}).get("uuid", "")
            if str(ev.get("deployment", "")).lower() != str(d).lower():
                errs.append("deployment attribute differs from data.deployment.uuid")
        out.append(errs)
    json.dump(out, sys.stdout)
  PY

  # Returns one list of error messages per body (empty when valid).
  def self.schema_errors(bodies)
    out, err, status = Open3.capture3("python3", "-c", VALIDATOR, SCHEMA, stdin_data: JSON.generate(bodies))
    raise "schema validator failed (is the jsonschema pip package installed?): #{err}" unless status.success?

    JSON.parse(out)
  end

  # ---- a TCP proxy to the broker that can be stopped and restarted --------

  class Proxy
    attr_reader :port

    def initialize(target_port: URI(BASE_URL).port || 5672, port: TestSupport.closed_port)
      @target_port = target_port
      @port = port
      @sockets = []
      @lock = Mutex.new
      @server = nil
    end

    # Starts listening (on the same port each time).
    def start
      @server = TCPServer.new("127.0.0.1", @port)
      @acceptor = Thread.new do
        loop do
          client = @server.accept
          upstream = TCPSocket.new("127.0.0.1", @target_port)
          @lock.synchronize { @sockets.push(client, upstream) }
          [[client, upstream], [upstream, client]].each do |from, to|
            Thread.new do
              IO.copy_stream(from, to)
            rescue StandardError
              nil
            ensure
              [from, to].each { |s| s.close rescue nil }
            end
          end
        end
      rescue StandardError
        nil
      end
      self
    end

    # Stops listening and cuts every connection (the broker "goes away").
    def stop
      @server&.close rescue nil
      @acceptor&.join(2)
      @lock.synchronize do
        @sockets.each do |s|
          s.shutdown(Socket::SHUT_RDWR) rescue nil
          s.close rescue nil
        end
        @sockets.clear
      end
      self
    end
  end
end

# Base class of the tests that use the broker: each test gets its own
# exchange and queue (bound like audrey-reporting's), deleted in teardown,
# and a spool directory.
class BrokerTest < Minitest::Test
  def setup
    @suffix = SecureRandom.hex(4)
    @exchange = "audrey.events.test-#{@suffix}"
    @queue_name = "audrey.reporting.test-#{@suffix}"
    @dir = Dir.mktmpdir("audrey-publisher-test")
    @publishers = []
    @log = StringIO.new
    @logger = Logger.new(@log, level: Logger::DEBUG)
    @conn = Bunny::Session.new(TestSupport.url, logger: Logger.new(IO::NULL)).start
    @ch = @conn.create_channel
  end

  def teardown
    @publishers.each { |p| p.close(timeout: 0.5) rescue nil }
    begin
      ch = @conn.open? ? @conn.create_channel : Bunny::Session.new(TestSupport.url, logger: Logger.new(IO::NULL)).start.create_channel
      ch.queue_delete(@queue_name)
      ch.exchange_delete(@exchange)
      ch.connection.close
    rescue StandardError => e
      warn("teardown of #{@exchange}/#{@queue_name}: #{e.message}")
    end
    FileUtils.rm_rf(@dir)
  end

  def url(**kw)
    TestSupport.url(**kw)
  end

  def spool_path
    File.join(@dir, "events.jsonl")
  end

  # A publisher on this test's exchange, closed in teardown.
  def publisher(**opts)
    defaults = { source: "/configserver/test-#{@suffix}", url: url, exchange: @exchange, logger: @logger,
                 retry_initial: 0.05, retry_max: 0.2, connect_timeout: 2, confirm_timeout: 5 }
    p = Audrey::Publisher.new(**defaults.merge(opts))
    @publishers << p
    p
  end

  # Declares this test's exchange and a queue bound to every Audrey event,
  # as audrey-reporting does.
  def bind_queue
    x = @ch.topic(@exchange, durable: true)
    q = @ch.queue(@queue_name, durable: true)
    q.bind(x, routing_key: TestSupport::ALL_EVENTS)
    q
  end

  # Takes `count` messages from the queue (waiting up to `timeout`).
  # Returns [[delivery_info, properties, body], ...].
  def take(count, timeout: 10)
    q = @ch.queue(@queue_name, durable: true)
    got = []
    deadline = Time.now + timeout
    while got.size < count && Time.now < deadline
      di, props, body = q.pop
      if di
        got << [di, props, body]
      else
        sleep 0.02
      end
    end
    got
  end

  def queue_depth
    @ch.queue(@queue_name, durable: true).message_count
  end

  def ids_of(messages)
    messages.map { |_di, _props, body| JSON.parse(body)["id"] }
  end

  # Waits until the block is true (or fails after `timeout`).
  def eventually(timeout: 10, message: "condition not met")
    deadline = Time.now + timeout
    until yield
      flunk(message) if Time.now > deadline
      sleep 0.02
    end
  end

  def spool_lines(path = spool_path)
    File.exist?(path) ? File.readlines(path, chomp: true).reject(&:empty?) : []
  end

  def uuid
    SecureRandom.uuid
  end
end
