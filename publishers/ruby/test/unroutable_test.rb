# frozen_string_literal: true

require_relative "test_helper"

# Messages the broker cannot route (no queue bound: audrey-reporting has not
# declared its queue yet) are failures: kept, in order, and retried.
class UnroutableTest < BrokerTest
  def test_unroutable_events_are_kept_and_retried_until_a_queue_is_bound
    pub = publisher(spool_path: spool_path)
    dep = uuid
    ids = 3.times.map { |i| pub.configuration_ended(deployment: dep, instance: uuid, service: "s", return_code: i) }
    eventually(message: "returned as unroutable") { pub.stats[:returned] >= 3 }
    refute pub.flush(timeout: 0.3)
    stats = pub.stats
    assert_equal 0, stats[:published]
    assert_equal 3, stats[:buffered]
    assert stats[:connected], "the connection is fine; the routing is not"
    assert_match(/unroutable.*no queue is bound/, stats[:last_error])
    assert_equal ids, spool_lines.map { |l| JSON.parse(l)["id"] }

    bind_queue # audrey-reporting starts and declares its queue
    assert pub.flush(timeout: 10), pub.stats.inspect
    assert_equal ids, ids_of(take(3))
    assert_equal 0, queue_depth, "each delivered once"
    assert_equal [], spool_lines
  end

  def test_a_passively_declared_exchange_must_exist
    pub = publisher(declare_exchange: :passive)
    id = pub.deployment_deleted(deployment: uuid)
    eventually(message: "the missing exchange is a failure") { pub.last_error.to_s.include?("NOT_FOUND") }
    assert_equal 1, pub.buffered

    bind_queue # declares the exchange and a queue
    assert pub.flush(timeout: 10), pub.stats.inspect
    assert_equal [id], ids_of(take(1))
  end
end
