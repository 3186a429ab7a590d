# frozen_string_literal: true

require_relative "test_helper"

# The spool: events survive a restart (or a crash) of the config server and
# are replayed by the next publisher on the same file.
class SpoolTest < BrokerTest
  LIB = File.expand_path("../lib", __dir__)

  # Runs a separate Ruby process that buffers `count` events with the broker
  # unreachable and then dies without closing anything (exit!, as a crash).
  # Returns the ids it printed.
  def crash_after_buffering(count)
    script = <<~RUBY
      require "audrey/publisher"
      require "logger"
      pub = Audrey::Publisher.new(source: "/configserver/crashing", url: ARGV[0], exchange: ARGV[1],
                                  spool_path: ARGV[2], logger: Logger.new(IO::NULL))
      dep = "#{uuid}"
      #{count}.times { |i| puts pub.configuration_ended(deployment: dep, instance: "#{uuid}", service: "s\#{i}", return_code: i) }
      $stdout.flush
      exit!(0)
    RUBY
    out, err, status = Open3.capture3("ruby", "-I", LIB, "-e", script, url(port: TestSupport.closed_port), @exchange, spool_path)
    assert status.success?, err
    out.split
  end

  def test_a_restart_replays_the_spool_in_order
    bind_queue
    ids = crash_after_buffering(5)
    assert_equal 5, ids.size
    assert_equal ids, spool_lines.map { |l| JSON.parse(l)["id"] }

    pub = publisher(spool_path: spool_path)
    assert_equal 5, pub.stats[:replayed]
    later = pub.deployment_deleted(deployment: uuid)
    assert pub.flush(timeout: 10)
    got = take(6)
    assert_equal ids + [later], ids_of(got), "replayed first, in order, ids kept"
    assert_equal ["/configserver/crashing"] * 5, got.first(5).map { |_d, _p, b| JSON.parse(b)["source"] },
                 "a replayed event keeps its source"
    assert_equal [], spool_lines
    assert_match(/replaying 5 event/, @log.string)
  end

  def test_close_while_unreachable_then_a_new_publisher_delivers
    bind_queue
    first = publisher(url: url(port: TestSupport.closed_port), spool_path: spool_path)
    ids = 3.times.map { first.instance_contacted(deployment: uuid, instance: uuid) }
    refute first.close(timeout: 0.2)

    second = publisher(spool_path: spool_path)
    assert second.flush(timeout: 10)
    assert_equal ids, ids_of(take(3))
    assert_equal 0, queue_depth
  end

  def test_a_second_publisher_cannot_share_a_live_spool
    publisher(url: url(port: TestSupport.closed_port), spool_path: spool_path)
    assert_raises(Audrey::SpoolLocked) { publisher(spool_path: spool_path) }
  end

  def test_unreadable_lines_are_moved_aside_counted_and_logged
    bind_queue
    good = Audrey::Events.deployment_deleted(source: "/configserver/x", deployment: uuid)
    File.write(spool_path, "#{JSON.generate(good)}\n{\"id\": \"cut by a cra\n")
    pub = publisher(spool_path: spool_path)
    assert_equal 1, pub.dropped
    assert_match(/ERROR .*DROPPED 1 unreadable line/, @log.string)
    assert_equal ["{\"id\": \"cut by a cra"], File.readlines("#{spool_path}.rejected", chomp: true)
    assert pub.flush(timeout: 10)
    assert_equal [good["id"]], ids_of(take(1))
  end

  def test_the_spool_file_keeps_only_pending_lines_once_the_confirmed_prefix_is_large
    spool = Audrey::Spool.new(spool_path)
    lines = 1200.times.map { |i| JSON.generate("id" => i.to_s, "type" => "t") }
    lines.each { |l| spool.append(l) }
    spool.confirmed(500, lines.drop(500))
    assert_equal 1200, spool_lines.size, "a small confirmed prefix is left in place"
    spool.confirmed(600, lines.drop(1100))
    assert_equal lines.drop(1100), spool_lines, "rewritten with the pending lines only"
    spool.append("x")
    assert_equal lines.drop(1100) + ["x"], spool_lines
    spool.confirmed(101, [])
    assert_equal 0, File.size(spool_path)
  ensure
    spool&.close
  end

  def test_the_spool_is_compacted_while_a_backlog_drains
    bind_queue
    pub = publisher(url: url(port: TestSupport.closed_port), spool_path: spool_path, batch_size: 100)
    dep = uuid
    ids = 2500.times.map { pub.instance_contacted(deployment: dep, instance: uuid) }
    assert_equal 2500, spool_lines.size
    pub.reconnect(url: url)
    assert pub.flush(timeout: 30)
    assert_equal ids, ids_of(take(2500))
    assert_equal 0, File.size(spool_path)
  end
end
