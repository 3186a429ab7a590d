# frozen_string_literal: true

require_relative "test_helper"

# Each event method, against the real broker: what lands in a queue bound
# like audrey-reporting's.
class PublishTest < BrokerTest
  def test_each_event_method_publishes_a_valid_persistent_confirmed_cloudevent
    bind_queue
    pub = publisher(version: "0.4.2")
    dep = uuid
    mysql = uuid
    wp = uuid
    started = Time.now
    ids = [
      pub.instance_registered(deployment: dep, deployment_name: "blog", instance: mysql, assembly: "mysql",
                              provided_parameters: %w[ipaddress hostname], services: [{ name: "mysql", parameters: [] }]),
      pub.instance_registered(deployment: dep, deployment_name: "blog", instance: wp, assembly: "wordpress",
                              services: [{ name: "wordpress", parameters: [
                                { name: "mysql_ip", kind: "parameter-reference", assembly: mysql, parameter: "ipaddress" }
                              ] }]),
      pub.deployment_registered(deployment: dep, name: "blog", instances: [mysql, wp]),
      pub.instance_contacted(deployment: dep, instance: mysql, request: "GET /configs"),
      pub.configuration_started(deployment: dep, instance: mysql, service: "mysql"),
      pub.configuration_ended(deployment: dep, instance: mysql, service: "mysql", return_code: 0),
      pub.parameters_provided(deployment: dep, instance: mysql, parameters: %w[ipaddress hostname]),
      pub.heartbeat(interval_seconds: 30),
      pub.deployment_deleted(deployment: dep)
    ]
    assert_operator Time.now - started, :<, 0.5, "event methods must not wait for the broker"
    ids.each { |id| assert_match Audrey::Events::UUID, id }

    assert pub.flush(timeout: 10), "every event confirmed"
    stats = pub.stats
    assert_equal 9, stats[:published]
    assert_equal 0, stats[:buffered]
    assert_equal 0, stats[:dropped]
    assert_nil stats[:last_error]
    assert stats[:connected]

    messages = take(9)
    assert_equal 9, messages.size
    assert_equal ids.sort, ids_of(messages).sort
    errors = TestSupport.schema_errors(messages.map(&:last))
    messages.zip(errors).each do |(di, props, body), errs|
      event = JSON.parse(body)
      assert_empty errs, "#{event['type']}: #{errs.inspect}"
      assert_equal event["type"], di.routing_key
      assert_equal @exchange, di.exchange
      assert_equal 2, props.delivery_mode, "persistent"
      assert_equal "application/cloudevents+json", props.content_type
      assert_equal event["id"], props.message_id
      assert_equal event["type"], props.type
      assert_equal pub.source, event["source"]
      if event["type"].end_with?(".heartbeat")
        refute event.key?("deployment")
        assert_equal({ "version" => "0.4.2", "interval_seconds" => 30 }, event["data"])
      else
        assert_equal dep, event["deployment"]
      end
    end
    # the heartbeat goes first; the others keep their order
    others = ids_of(messages).reject { |id| id == ids[7] }
    assert_equal ids.reject { |id| id == ids[7] }, others
  end

  def test_many_events_from_many_threads_all_arrive_once
    bind_queue
    pub = publisher(batch_size: 50)
    dep = uuid
    threads = 8.times.map do
      Thread.new { 50.times.map { pub.instance_contacted(deployment: dep, instance: uuid, request: "GET /params") } }
    end
    ids = threads.flat_map(&:value)
    assert pub.flush(timeout: 20)
    assert_equal 400, pub.published
    got = take(400)
    assert_equal ids.sort, ids_of(got).sort
    assert_equal 0, queue_depth
  end

  def test_exchange_is_declared_durable_topic_idempotently
    pub = publisher
    pub.deployment_deleted(deployment: uuid)
    eventually(message: "exchange declared") { pub.stats[:failures].positive? || pub.connected? }
    # declaring it again the same way is accepted: it is a durable topic exchange
    ch = @conn.create_channel
    ch.exchange_declare(@exchange, "topic", durable: true, passive: false)
    assert ch.open?
  end

  def test_invalid_arguments_raise_in_the_caller_by_default
    pub = publisher
    assert_raises(Audrey::InvalidEvent) { pub.configuration_ended(deployment: uuid, instance: uuid, service: "a/b", return_code: 0) }
    assert_equal 0, pub.buffered
  end

  def test_invalid_arguments_can_be_logged_and_counted_instead
    pub = publisher(invalid: :log)
    assert_nil pub.configuration_ended(deployment: uuid, instance: uuid, service: "s", return_code: "0")
    assert_equal 1, pub.stats[:rejected]
    assert_equal 0, pub.buffered
    assert_match(/ERROR .*refused configuration_ended/, @log.string)
  end
end
