# frozen_string_literal: true

require_relative "test_helper"

# The broker unreachable: calls return at once, events wait (in memory and
# in the spool) and arrive in order once a broker is reachable.
class OutageTest < BrokerTest
  def contacted(pub, dep, n)
    n.times.map { |i| pub.instance_contacted(deployment: dep, instance: uuid, request: "GET /configs #{i}") }
  end

  def test_unreachable_broker_buffers_and_spools_then_delivers_in_order_after_reconnect
    bind_queue
    pub = publisher(url: url(port: TestSupport.closed_port), spool_path: spool_path)
    dep = uuid
    durations = []
    ids = 20.times.map do |i|
      t = Time.now
      id = pub.configuration_started(deployment: dep, instance: uuid, service: "svc#{i}")
      durations << Time.now - t
      id
    end
    assert_operator durations.max, :<, 0.05, "calls return immediately (slowest #{durations.max}s)"
    eventually(message: "a failed attempt recorded") { pub.stats[:failures] >= 2 }
    refute pub.flush(timeout: 0.3), "nothing can be confirmed"
    stats = pub.stats
    assert_equal 20, stats[:buffered]
    assert_equal 0, stats[:published]
    assert_equal 0, stats[:dropped]
    refute stats[:connected]
    assert_match(/refused|TCPConnectionFailed|connect/i, stats[:last_error])
    assert_equal ids, spool_lines.map { |l| JSON.parse(l)["id"] }, "spooled in order"
    assert_equal 0, queue_depth

    pub.reconnect(url: url)
    assert pub.flush(timeout: 10)
    assert_equal ids, ids_of(take(20)), "delivered in order"
    assert_equal 20, pub.published
    assert_equal [], spool_lines, "the spool holds only unconfirmed events"
    assert_match(/publishing again/, @log.string)
  end

  def test_a_list_of_urls_is_tried_in_turn
    bind_queue
    pub = publisher(urls: [url(port: TestSupport.closed_port), url])
    ids = contacted(pub, uuid, 5)
    assert pub.flush(timeout: 10)
    assert_equal ids, ids_of(take(5))
  end

  def test_broker_going_away_and_coming_back_is_survived_without_help
    bind_queue
    proxy = TestSupport::Proxy.new.start
    pub = publisher(url: url(port: proxy.port), spool_path: spool_path)
    dep = uuid
    first = contacted(pub, dep, 5)
    assert pub.flush(timeout: 10)

    proxy.stop # the broker is gone: the connection is cut, new ones refused
    eventually(message: "the loss is noticed") { !pub.connected? }
    second = contacted(pub, dep, 5)
    eventually(message: "attempts fail while it is away") { pub.stats[:failures] >= 2 }
    assert_equal 5, pub.buffered
    assert_equal second, spool_lines.map { |l| JSON.parse(l)["id"] }

    proxy.start # back on the same address
    assert pub.flush(timeout: 10), "delivered after the broker came back: #{pub.stats.inspect}"
    assert_equal first + second, ids_of(take(10))
    assert_equal [], spool_lines
  ensure
    proxy&.stop
  end

  def test_connection_closed_by_the_broker_is_reopened
    bind_queue
    pub = publisher
    dep = uuid
    first = contacted(pub, dep, 3)
    assert pub.flush(timeout: 10)
    TestSupport.rabbitmqctl("close_all_connections", "--vhost", TestSupport.vhost, "test: connection closed by the broker")
    eventually(message: "the close is noticed") { pub.last_error.to_s.include?("CONNECTION_FORCED") }
    # the test's own connection was closed too
    @conn = Bunny::Session.new(TestSupport.url, logger: Logger.new(IO::NULL)).start
    @ch = @conn.create_channel
    second = contacted(pub, dep, 3)
    assert pub.flush(timeout: 10), pub.stats.inspect
    assert_equal first + second, ids_of(take(6))
  end

  def test_close_while_unreachable_returns_within_its_timeout_and_keeps_the_spool
    pub = publisher(url: url(port: TestSupport.closed_port), spool_path: spool_path)
    ids = contacted(pub, uuid, 3)
    t = Time.now
    refute pub.close(timeout: 0.5)
    assert_operator Time.now - t, :<, 3
    assert pub.closed?
    assert_equal ids, spool_lines.map { |l| JSON.parse(l)["id"] }
    assert_raises(IOError) { pub.deployment_deleted(deployment: uuid) }
  end

  def test_close_without_a_spool_counts_what_is_lost
    pub = publisher(url: url(port: TestSupport.closed_port))
    contacted(pub, uuid, 2)
    refute pub.close(timeout: 0.2)
    assert_equal 2, pub.dropped
    assert_match(/ERROR .*no spool: they are lost/, @log.string)
  end
end
