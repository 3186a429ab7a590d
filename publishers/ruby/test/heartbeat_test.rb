# frozen_string_literal: true

require_relative "test_helper"

class HeartbeatTest < BrokerTest
  def test_the_timer_publishes_heartbeats_until_stopped
    bind_queue
    pub = publisher(version: "cs-9.9")
    timer = pub.start_heartbeats(interval_seconds: 1)
    assert_equal 1, timer.interval_seconds
    eventually(timeout: 5, message: "two heartbeats") { pub.published >= 2 }
    pub.stop_heartbeats
    assert pub.flush(timeout: 5)
    count = pub.published
    sleep 1.3
    assert_equal count, pub.published, "no heartbeat after stop"

    got = take(count)
    assert_equal count, got.size
    assert_empty TestSupport.schema_errors(got.map(&:last)).flatten
    got.each do |di, props, body|
      event = JSON.parse(body)
      assert_equal "org.aeolusproject.audrey.configserver.heartbeat", di.routing_key
      assert_equal 2, props.delivery_mode
      assert_equal({ "version" => "cs-9.9", "interval_seconds" => 1 }, event["data"])
      refute event.key?("deployment")
    end
  end

  def test_the_timer_object_stops_too_and_bad_intervals_are_refused
    pub = publisher(url: url(port: TestSupport.closed_port))
    assert_raises(Audrey::InvalidEvent) { pub.start_heartbeats(interval_seconds: 0) }
    timer = pub.start_heartbeats(interval_seconds: 60)
    eventually(message: "first heartbeat at once") { pub.buffered == 1 }
    timer.stop
  end

  def test_heartbeats_are_not_spooled
    pub = publisher(url: url(port: TestSupport.closed_port), spool_path: spool_path)
    pub.heartbeat(interval_seconds: 30)
    assert_equal 1, pub.buffered
    assert_equal [], spool_lines
  end
end
