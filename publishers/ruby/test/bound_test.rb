# frozen_string_literal: true

require_relative "test_helper"

# The buffer's bound: enforced, counted, logged, never silent.
class BoundTest < BrokerTest
  def test_events_beyond_the_bound_are_dropped_loudly_and_the_rest_delivered
    bind_queue
    seen = []
    pub = publisher(url: url(port: TestSupport.closed_port), spool_path: spool_path, max_buffered: 3,
                    on_drop: ->(event) { seen << event["id"] })
    dep = uuid
    results = 5.times.map { |i| pub.configuration_started(deployment: dep, instance: uuid, service: "s#{i}") }
    kept = results.first(3)
    assert kept.all?, "the first three are buffered"
    assert_equal [nil, nil], results.last(2), "the last two are refused"
    stats = pub.stats
    assert_equal 2, stats[:dropped]
    assert_equal 3, stats[:buffered]
    assert_equal 2, @log.string.scan(/^E, .*DROPPED event .*buffer full/).size, @log.string
    assert_equal 2, seen.size
    assert_equal seen, File.readlines("#{spool_path}.rejected").map { |l| JSON.parse(l)["id"] },
                 "dropped events are kept aside for an operator"
    assert_equal kept, spool_lines.map { |l| JSON.parse(l)["id"] }

    pub.reconnect(url: url)
    assert pub.flush(timeout: 10)
    assert_equal kept, ids_of(take(3))
    assert_equal 2, pub.dropped
    # room again once delivered
    assert pub.deployment_deleted(deployment: dep)
  end

  def test_the_byte_bound_is_enforced_too
    pub = publisher(url: url(port: TestSupport.closed_port), max_buffered_bytes: 1000)
    dep = uuid
    results = 10.times.map { pub.instance_contacted(deployment: dep, instance: uuid, request: "GET /configs") }
    assert_operator results.compact.size, :<, 10
    assert_operator results.compact.size, :>, 0
    assert_operator pub.stats[:buffered_bytes], :<=, 1000
    assert_equal results.count(nil), pub.dropped
  end

  def test_a_spool_larger_than_the_bound_is_cut_loudly_on_replay
    events = 5.times.map { Audrey::Events.deployment_deleted(source: "/configserver/x", deployment: uuid) }
    File.write(spool_path, events.map { |e| JSON.generate(e) + "\n" }.join)
    pub = publisher(url: url(port: TestSupport.closed_port), spool_path: spool_path, max_buffered: 2)
    assert_equal 2, pub.stats[:replayed]
    assert_equal 3, pub.dropped
    assert_match(/ERROR .*DROPPED 3 spooled event/, @log.string)
    assert_equal events.first(2).map { |e| e["id"] }, spool_lines.map { |l| JSON.parse(l)["id"] }
    assert_equal events.last(3).map { |e| e["id"] }, File.readlines("#{spool_path}.rejected").map { |l| JSON.parse(l)["id"] }
  end

  def test_heartbeats_do_not_fill_the_buffer
    pub = publisher(url: url(port: TestSupport.closed_port), max_buffered: 1)
    assert pub.deployment_deleted(deployment: uuid)
    5.times { |i| assert pub.heartbeat(interval_seconds: 30 + i) }
    stats = pub.stats
    assert_equal 2, stats[:buffered], "one event and the latest heartbeat"
    assert_equal 4, stats[:heartbeats_superseded]
    assert_equal 0, stats[:dropped]
  end
end
