# frozen_string_literal: true

require_relative "test_helper"

# examples/replay.rb: a JSON Lines file of events, replayed through the
# library's event methods, arrives as the same events (new ids), every
# heartbeat included, each under its own source.
class ReplayTest < BrokerTest
  REPLAY = File.join(TestSupport::ROOT, "examples", "replay.rb")
  EXAMPLES = File.expand_path("../../schemas/examples", TestSupport::ROOT)

  # schemas/examples (one event of each type), plus heartbeats of a second
  # config server close together: the library keeps only the latest waiting
  # heartbeat, the replay must still publish each.
  def events
    examples = Dir[File.join(EXAMPLES, "*.json")].sort.map { |f| JSON.parse(File.read(f)) }
    beat = examples.find { |e| e["type"].end_with?(".heartbeat") }
    beats = (1..3).map do |i|
      beat.merge("id" => "beat-#{i}", "source" => "/configserver/cs-02", "time" => "2026-11-25T16:1#{i}:00.123456789Z")
    end
    examples + beats
  end

  def write(events)
    path = File.join(@dir, "events.jsonl")
    File.write(path, events.map { |e| JSON.generate(e) + "\n" }.join)
    path
  end

  # What may differ: the id (new), and `datacontenttype`, which the library
  # always sets (application/json, what its absence means).
  def without_id(event)
    { "datacontenttype" => "application/json" }.merge(event.reject { |k, _| k == "id" })
  end

  def test_every_event_arrives_with_its_own_source_time_and_data_and_a_new_id
    bind_queue
    input = events
    out, err, status = Open3.capture3("ruby", REPLAY, write(input), "--url", url, "--exchange", @exchange, "--timeout", "10")
    assert status.success?, "replay failed: #{err}"
    assert_equal "published=#{input.size}", out.strip

    got = take(input.size)
    assert_equal input.size, got.size
    assert_equal 0, queue_depth
    assert_empty TestSupport.schema_errors(got.map(&:last)).flatten
    received = got.map { |_d, _p, body| JSON.parse(body) }
    assert_equal input.map { |e| without_id(e) }.sort_by(&:to_s), received.map { |e| without_id(e) }.sort_by(&:to_s)
    assert_empty received.map { |e| e["id"] } & input.map { |e| e["id"] }, "the library gives new ids"
    got.each do |di, props, body|
      assert_equal JSON.parse(body)["type"], di.routing_key
      assert_equal "application/cloudevents+json", props.content_type
      assert_equal 2, props.delivery_mode
    end
  end

  def test_source_publishes_everything_as_one_config_server
    bind_queue
    input = events
    out, err, status = Open3.capture3("ruby", REPLAY, write(input), "--url", url, "--exchange", @exchange,
                                      "--source", "/configserver/replayed")
    assert status.success?, "replay failed: #{err}"
    assert_equal "published=#{input.size}", out.strip
    got = take(input.size)
    assert_equal ["/configserver/replayed"], got.map { |_d, _p, body| JSON.parse(body)["source"] }.uniq
  end

  def test_an_invalid_line_stops_the_replay_before_anything_is_published
    bind_queue
    input = events
    i = input.index { |e| e["type"].end_with?(".instance.contacted") }
    input[i] = input[i].merge("data" => input[i]["data"].merge("instance" => "not-a-uuid"))
    _out, err, status = Open3.capture3("ruby", REPLAY, write(input), "--url", url, "--exchange", @exchange)
    assert_equal 1, status.exitstatus
    assert_match(/events\.jsonl:#{i + 1}: cannot replay this line: .*not-a-uuid/, err)
    sleep 0.2
    assert_equal 0, queue_depth
  end

  def test_unconfirmed_events_make_the_replay_fail
    # no queue bound: every event is unroutable
    _out, err, status = Open3.capture3("ruby", REPLAY, write(events), "--url", url, "--exchange", @exchange,
                                       "--timeout", "1")
    assert_equal 1, status.exitstatus
    assert_match(/not every event was confirmed/, err)
  end

  def test_bad_arguments_exit_2
    _out, err, status = Open3.capture3("ruby", REPLAY)
    assert_equal 2, status.exitstatus
    assert_match(/usage: replay\.rb FILE\.jsonl/, err)
  end
end
