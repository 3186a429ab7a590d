# frozen_string_literal: true

require "bunny"
require "json"
require "logger"
require "securerandom"

require_relative "version"
require_relative "events"
require_relative "spool"

module Audrey
  # Publishes what an Audrey config server observes, as CloudEvents on the
  # RabbitMQ topic exchange audrey-reporting consumes (see
  # `schemas/events.schema.json` in this repository).
  #
  # One method per fact the config server observes, named in its words
  # ({#instance_registered}, {#deployment_registered}, {#instance_contacted},
  # {#configuration_started}, {#configuration_ended}, {#parameters_provided},
  # {#deployment_deleted}, {#heartbeat}). Each builds the event in the
  # caller's thread (its `time` is the moment of the call), appends it to the
  # buffer (and the spool file) and returns its id at once: it never waits
  # for the broker. A background thread publishes the buffer in order, with
  # publisher confirms, and removes events only once the broker has
  # confirmed them.
  #
  #   publisher = Audrey::Publisher.new(source: "/configserver/cs-01",
  #                                     url: "amqp://guest:guest@127.0.0.1:5672/%2f",
  #                                     spool_path: "/var/lib/configserver/audrey-events.jsonl")
  #   publisher.start_heartbeats(interval_seconds: 30)
  #   publisher.instance_contacted(deployment: dep, instance: uuid, request: "GET /configs")
  #   ...
  #   publisher.close(timeout: 10)
  #
  # Reliability:
  # - the broker unreachable, refusing (nack) or unable to route a message
  #   (no queue bound: `mandatory`) are all failures: the events stay
  #   buffered, in order, and are retried with capped exponential backoff
  #   (reconnecting through the given URLs in turn) for as long as it takes;
  # - with `spool_path`, every buffered event is also in a JSON Lines file,
  #   replayed by the next publisher on that file (after a restart or crash);
  # - the buffer is bounded (`max_buffered` events, `max_buffered_bytes`):
  #   an event beyond the bound is dropped, logged at error level, counted
  #   in `dropped`, handed to `on_drop` and written to `SPOOL.rejected`;
  # - a retried event keeps its id: audrey-reporting deduplicates by
  #   (source, id), so a re-publish after a lost confirm changes nothing.
  #
  # Thread-safe: one publisher per process, shared by all request threads.
  class Publisher
    DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/%2f"
    DEFAULT_EXCHANGE = "audrey.events"
    # AMQP content type of a structured-mode CloudEvent.
    CONTENT_TYPE = "application/cloudevents+json"

    # One buffered event: its id and type (routing key), the JSON line
    # published (and spooled), and whether it is a heartbeat.
    Entry = Struct.new(:id, :type, :line, :deployment, :heartbeat)

    # The broker took the message but could not route it to any queue.
    class Unroutable < StandardError; end
    # The broker refused the message (basic.nack).
    class Nacked < StandardError; end
    # No confirm arrived in time.
    class ConfirmTimeout < StandardError; end
    # The connection died under us (reported by bunny's reader thread).
    class ConnectionLost < StandardError; end
    # Connecting (or declaring the exchange) failed.
    class ConnectFailed < StandardError; end

    attr_reader :source, :exchange_name, :version

    # source:: this config server's name, the CloudEvents `source` of every
    #          event (e.g. "/configserver/cs-01"); 1 to 255 characters.
    # url / urls:: the broker's AMQP URL, or several tried in turn (a
    #          cluster's nodes). Default: guest on 127.0.0.1:5672, vhost "/".
    # exchange:: the topic exchange (default "audrey.events").
    # declare_exchange:: `:durable` (default) declares it, idempotently, as a
    #          durable topic exchange, as audrey-reporting does; `:passive`
    #          only checks that it exists (a missing exchange is a failure,
    #          retried); `false` does neither.
    # spool_path:: JSON Lines file mirroring the buffer, replayed on start;
    #          nil keeps the buffer in memory only (lost on restart).
    # spool_fsync:: fsync the spool on every event (survives a power loss,
    #          costs a disk flush per call); default false (survives a
    #          process restart or crash).
    # max_buffered / max_buffered_bytes:: the buffer's bound (events, bytes
    #          of JSON); default 10,000 events and 64 MiB.
    # batch_size:: events published per round of confirms (default 100).
    # confirm_timeout:: seconds to wait for a batch's confirms before
    #          treating the connection as broken (default 15).
    # connect_timeout:: TCP connect timeout in seconds (default 5).
    # retry_initial / retry_max:: backoff between failed attempts, doubling
    #          from `retry_initial` up to `retry_max` seconds (default 0.2 and
    #          15, as audrey-reporting's consumer), with jitter.
    # version:: the config server's software version, sent in heartbeats.
    # logger:: a Logger (default: $stderr, INFO). One line per state change;
    #          every dropped event at ERROR.
    # on_drop:: optional callable, called with the event Hash of each event
    #          the bound dropped (in the caller's thread; exceptions ignored).
    # invalid:: what an event method does with arguments breaking the
    #          contract: `:raise` (default) raises {Audrey::InvalidEvent};
    #          `:log` logs at error level, counts it in `rejected` and
    #          returns nil.
    # start:: start the background thread now (default true).
    def initialize(source:, url: nil, urls: nil, exchange: DEFAULT_EXCHANGE, declare_exchange: :durable,
                   spool_path: nil, spool_fsync: false, max_buffered: 10_000, max_buffered_bytes: 64 * 1024 * 1024,
                   batch_size: 100, confirm_timeout: 15, connect_timeout: 5, retry_initial: 0.2, retry_max: 15,
                   version: VERSION, logger: nil, on_drop: nil, invalid: :raise, start: true)
      @source = Events.source!(source)
      @version = version
      @urls = normalize_urls(url, urls)
      @exchange_name = exchange
      unless [:durable, :passive, false].include?(declare_exchange)
        raise ArgumentError, "declare_exchange: :durable, :passive or false"
      end
      raise ArgumentError, "invalid: :raise or :log" unless %i[raise log].include?(invalid)

      @declare_exchange = declare_exchange
      @max_buffered = Integer(max_buffered)
      @max_buffered_bytes = Integer(max_buffered_bytes)
      @batch_size = Integer(batch_size)
      @confirm_timeout = Float(confirm_timeout)
      @connect_timeout = Float(connect_timeout)
      @retry_initial = Float(retry_initial)
      @retry_max = Float(retry_max)
      @logger = logger || Logger.new($stderr, level: Logger::INFO)
      @bunny_logger = QuietLogger.new(@logger)
      # bunny's own operations (connection and channel open, declare) and
      # each wait for confirms time out after this; a lost connection is
      # noticed at least this often while waiting for confirms
      @operation_timeout = [@confirm_timeout, 5.0].min
      @on_drop = on_drop
      @invalid = invalid

      @lock = Mutex.new
      @work = ConditionVariable.new      # signalled: new work, reconnect, stop
      @drained = ConditionVariable.new   # signalled: the buffer shrank
      @queue = []
      @queue_bytes = 0
      @heartbeat_entry = nil
      @stats = { published: 0, dropped: 0, rejected: 0, replayed: 0, returned: 0, nacked: 0,
                 failures: 0, heartbeats_superseded: 0, spool_errors: 0 }
      @last_error = nil
      @last_error_at = nil
      @connected = false
      @stopping = false
      @reconnect = false
      @url_index = 0
      @session = nil
      @session_failure = nil
      @heartbeats = nil
      @worker = nil
      @closed = false
      @recovering = false

      @spool = spool_path && Spool.new(spool_path, fsync: spool_fsync)
      replay_spool if @spool
      self.start if start
    end

    # Starts the background publishing thread (done by `new` unless
    # `start: false`). Idempotent.
    def start
      @lock.synchronize do
        raise IOError, "publisher closed" if @closed
        return self if @worker&.alive?

        @worker = Thread.new { run }
        @worker.name = "audrey-publisher" if @worker.respond_to?(:name=)
      end
      self
    end

    # ---- the events, in the config server's words --------------------------
    # Each returns the event id (a UUID String) once the event is buffered,
    # or nil when the bound dropped it (or `invalid: :log` refused it).
    # `time:` (a Time) defaults to now: when the config server observed it.

    # Conductor posted an instance's config. See {Audrey::Events.instance_registered}
    # for the shape of `services`.
    def instance_registered(deployment:, deployment_name:, instance:, assembly:, provided_parameters: [], services: [], time: nil)
      build_and_enqueue(:instance_registered, deployment: deployment, deployment_name: deployment_name, instance: instance,
                                              assembly: assembly, provided_parameters: provided_parameters, services: services, time: time)
    end

    # Conductor has posted the configs of all the deployment's instances.
    def deployment_registered(deployment:, name:, instances:, time: nil)
      build_and_enqueue(:deployment_registered, deployment: deployment, name: name, instances: instances, time: time)
    end

    # An agent request reached the config server, e.g. request: "GET /configs".
    def instance_contacted(deployment:, instance:, request: nil, time: nil)
      build_and_enqueue(:instance_contacted, deployment: deployment, instance: instance, request: request, time: time)
    end

    # The agent fetched the service's config with every parameter resolved.
    def configuration_started(deployment:, instance:, service:, time: nil)
      build_and_enqueue(:configuration_started, deployment: deployment, instance: instance, service: service, time: time)
    end

    # The agent put the service's exit code back.
    def configuration_ended(deployment:, instance:, service:, return_code:, time: nil)
      build_and_enqueue(:configuration_ended, deployment: deployment, instance: instance, service: service,
                                              return_code: return_code, time: time)
    end

    # The agent put provided parameters back (names, or a Hash whose values
    # are not published).
    def parameters_provided(deployment:, instance:, parameters:, time: nil)
      build_and_enqueue(:parameters_provided, deployment: deployment, instance: instance, parameters: parameters, time: time)
    end

    # Conductor deleted the deployment.
    def deployment_deleted(deployment:, time: nil)
      build_and_enqueue(:deployment_deleted, deployment: deployment, time: time)
    end

    # One heartbeat. Heartbeats are not spooled and a newer one replaces an
    # older one still waiting (counted in `heartbeats_superseded`): only the
    # latest says anything about liveness.
    def heartbeat(interval_seconds:, version: @version, time: nil)
      build_and_enqueue(:heartbeat, version: version, interval_seconds: interval_seconds, time: time)
    end

    # Publishes a heartbeat now and every `interval_seconds` from a
    # background thread, until {#stop_heartbeats} (or {#close}). Replaces a
    # running timer. Returns the {Heartbeats} timer (which has `#stop`).
    def start_heartbeats(interval_seconds: 30, version: @version)
      # checks the arguments in the caller's thread
      Events.heartbeat(source: @source, version: version, interval_seconds: interval_seconds)
      stop_heartbeats
      @heartbeats = Heartbeats.new(self, interval_seconds: interval_seconds, version: version, logger: @logger)
    end

    # Stops the heartbeat timer, if any.
    def stop_heartbeats
      @heartbeats&.stop
      @heartbeats = nil
    end

    # Low level: buffers an already built event Hash (String keys, as
    # {Audrey::Events} builds them); returns its id or nil if dropped.
    def publish(event)
      raise InvalidEvent, "an event Hash with an id and a type is required" unless event.is_a?(Hash) && event["id"] && event["type"]

      enqueue(event)
    end

    # ---- control -----------------------------------------------------------

    # Waits until every buffered event is confirmed by the broker, or
    # `timeout` seconds passed. Returns true when the buffer is empty.
    def flush(timeout: 10)
      deadline = monotonic + timeout
      @lock.synchronize do
        @work.broadcast
        until @queue.empty? && @heartbeat_entry.nil?
          left = deadline - monotonic
          return false if left <= 0

          @drained.wait(@lock, left)
        end
        true
      end
    end

    # Switches to other broker URLs (or reconnects to the same ones when
    # none are given): drops the current connection and connects again at
    # once, cutting short any backoff. Buffered events are kept.
    def reconnect(url: nil, urls: nil)
      @lock.synchronize do
        @urls = normalize_urls(url, urls) if url || urls
        @url_index = 0
        @reconnect = true
        @work.broadcast
      end
      self
    end

    # Stops the heartbeats, flushes (up to `timeout` seconds), stops the
    # background thread and closes the connection and the spool. Events not
    # confirmed by then stay in the spool for the next publisher (without a
    # spool they are lost: logged at error level and counted in `dropped`).
    # Returns true when everything was confirmed.
    def close(timeout: 10)
      return true if @closed

      stop_heartbeats
      flushed = flush(timeout: timeout)
      @lock.synchronize do
        @stopping = true
        @work.broadcast
      end
      if @worker && !@worker.join(@confirm_timeout + @connect_timeout + 1)
        @logger.warn("audrey publisher: background thread did not stop in time; killing it")
        @worker.kill
        @worker.join(1)
      end
      disconnect
      @lock.synchronize do
        @closed = true
        unless @queue.empty?
          if @spool
            @logger.warn("audrey publisher: closing with #{@queue.size} unconfirmed event(s); they stay in #{@spool.path}")
          else
            @stats[:dropped] += @queue.size
            @logger.error("audrey publisher: closing with #{@queue.size} unconfirmed event(s) and no spool: they are lost")
          end
        end
        begin
          @spool&.close
        rescue StandardError => e
          @logger.error("audrey publisher: closing spool: #{e.message}")
        end
      end
      flushed
    end

    def closed?
      @closed
    end

    # ---- statistics --------------------------------------------------------

    # A snapshot: published (events confirmed by the broker), buffered
    # (waiting, heartbeat included), buffered_bytes, dropped (refused by the
    # bound, or lost at close without a spool), rejected (invalid arguments
    # with `invalid: :log`), replayed (taken from the spool at start),
    # returned (unroutable publishes), nacked, failures (failed attempts),
    # heartbeats_superseded, spool_errors, connected, last_error (message)
    # and last_error_at (Time).
    def stats
      @lock.synchronize do
        @stats.merge(buffered: @queue.size + (@heartbeat_entry ? 1 : 0), buffered_bytes: @queue_bytes,
                     connected: @connected, last_error: @last_error, last_error_at: @last_error_at)
      end
    end

    def published
      @lock.synchronize { @stats[:published] }
    end

    def buffered
      @lock.synchronize { @queue.size + (@heartbeat_entry ? 1 : 0) }
    end

    def dropped
      @lock.synchronize { @stats[:dropped] }
    end

    def last_error
      @lock.synchronize { @last_error }
    end

    def connected?
      @lock.synchronize { @connected }
    end

    # The spool file, if any.
    def spool_path
      @spool&.path
    end

    # ---- internals ---------------------------------------------------------

    # The heartbeat timer started by {Publisher#start_heartbeats}.
    class Heartbeats
      attr_reader :interval_seconds

      def initialize(publisher, interval_seconds:, version:, logger:)
        @publisher = publisher
        @logger = logger
        @interval_seconds = interval_seconds
        @lock = Mutex.new
        @cond = ConditionVariable.new
        @stopped = false
        @thread = Thread.new { run(version) }
        @thread.name = "audrey-heartbeats" if @thread.respond_to?(:name=)
      end

      # Stops the timer (waits for its thread).
      def stop
        @lock.synchronize do
          @stopped = true
          @cond.broadcast
        end
        @thread.join unless Thread.current == @thread
        nil
      end

      private

      def run(version)
        loop do
          begin
            @publisher.heartbeat(interval_seconds: @interval_seconds, version: version)
          rescue StandardError => e
            @logger.error("audrey publisher: heartbeat not buffered: #{e.class}: #{e.message}")
          end
          deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + @interval_seconds
          @lock.synchronize do
            until @stopped
              left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
              break if left <= 0

              @cond.wait(@lock, left)
            end
            return if @stopped
          end
        end
      end
    end

    # Receives what bunny's reader thread would otherwise raise
    # asynchronously in the thread that created the connection.
    class SessionErrorHandler
      def initialize(publisher, session_id)
        @publisher = publisher
        @session_id = session_id
      end

      def raise(error)
        @publisher.send(:session_failed, @session_id, error)
      end
    end
    private_constant :SessionErrorHandler

    # Hands bunny's log lines to the publisher's logger one notch down
    # (bunny's warnings and errors repeat what the publisher reports itself).
    class QuietLogger
      def initialize(logger)
        @logger = logger
      end

      # what bunny logs about a network failure, which the publisher
      # reports itself in one line
      REPORTED = /\A(\t|Backtrace:|Exception in the reader loop|Got an exception when receiving data|Could not establish TCP connection|Will try to connect)/.freeze

      { debug: Logger::DEBUG, info: Logger::INFO, warn: Logger::WARN,
        error: Logger::ERROR, fatal: Logger::FATAL }.each do |name, level|
        define_method(name) do |message = nil, &block|
          add(level, message, &block)
        end
        define_method(:"#{name}?") { @logger.level <= level }
      end

      def add(severity, message = nil, _progname = nil, &block)
        message ||= block&.call
        level = if severity.to_i <= Logger::INFO || message.to_s.match?(REPORTED)
                  Logger::DEBUG
                else
                  [severity.to_i - 1, Logger::INFO].max
                end
        @logger.add(level, message, "bunny")
      end

      def level
        @logger.level
      end

      def progname=(_name); end
    end
    private_constant :QuietLogger

    private

    def build_and_enqueue(kind, **args)
      event = Events.public_send(kind, source: @source, **args)
      enqueue(event)
    rescue InvalidEvent => e
      raise if @invalid == :raise

      @lock.synchronize { @stats[:rejected] += 1 }
      @logger.error("audrey publisher: refused #{kind} event (not sent): #{e.message}")
      nil
    end

    def enqueue(event)
      line = JSON.generate(event)
      entry = Entry.new(event["id"], event["type"], line, event["deployment"], event["type"] == Events::HEARTBEAT_TYPE)
      if line.bytesize > 1024 * 1024
        @logger.warn("audrey publisher: event #{entry.id} (#{entry.type}) is #{line.bytesize} bytes: " \
                     "audrey-reporting dead-letters events over its --max-event-bytes (1 MiB by default)")
      end
      drop_reason = nil
      @lock.synchronize do
        raise IOError, "publisher closed" if @closed

        restart_worker_if_dead
        if entry.heartbeat
          @stats[:heartbeats_superseded] += 1 if @heartbeat_entry
          @heartbeat_entry = entry
        elsif @queue.size >= @max_buffered || @queue_bytes + line.bytesize > @max_buffered_bytes
          @stats[:dropped] += 1
          drop_reason = "buffer full (#{@queue.size} events, #{@queue_bytes} bytes; bound #{@max_buffered} events, " \
                        "#{@max_buffered_bytes} bytes); last error: #{@last_error || 'none'}"
          spool_reject([line])
        else
          @queue << entry
          @queue_bytes += line.bytesize
          spool_append(entry)
        end
        @work.signal unless drop_reason
      end
      if drop_reason
        @logger.error("audrey publisher: DROPPED event #{entry.id} (#{entry.type}, deployment #{entry.deployment}): #{drop_reason}")
        notify_drop(event)
        return nil
      end
      entry.id
    end

    # Called under @lock. The background thread only ends on close; should a
    # bug kill it, the next event starts a new one.
    def restart_worker_if_dead
      return if @worker.nil? || @worker.alive? || @stopping

      @logger.error("audrey publisher: background thread had died; restarting it")
      @worker = Thread.new { run }
    end

    def notify_drop(event)
      @on_drop&.call(event)
    rescue StandardError => e
      @logger.error("audrey publisher: on_drop raised #{e.class}: #{e.message}")
    end

    # Called under @lock.
    def spool_append(entry)
      return unless @spool

      if @spool.dirty?
        @spool.rewrite(@queue.map(&:line))
      else
        @spool.append(entry.line)
      end
    rescue SystemCallError, IOError => e
      spool_error(e)
    end

    # Called under @lock.
    def spool_reject(lines)
      @spool&.reject(lines)
    rescue SystemCallError, IOError => e
      spool_error(e)
    end

    # Called under @lock.
    def spool_error(error)
      @stats[:spool_errors] += 1
      note_error("spool #{@spool.path}: #{error.message}")
      @logger.error("audrey publisher: spool write failed (events kept in memory only until it works again): #{error.message}")
    end

    def replay_spool
      lines, unreadable = @spool.load
      kept = []
      over = []
      bytes = 0
      lines.each do |line, event|
        if kept.size >= @max_buffered || bytes + line.bytesize > @max_buffered_bytes
          over << line
        else
          kept << Entry.new(event["id"], event["type"], line, event["deployment"], false)
          bytes += line.bytesize
        end
      end
      @queue.concat(kept)
      @queue_bytes = bytes
      @stats[:replayed] = kept.size
      @stats[:dropped] += unreadable + over.size
      if unreadable.positive?
        @logger.error("audrey publisher: DROPPED #{unreadable} unreadable line(s) of spool #{@spool.path} " \
                      "(moved to #{@spool.path}.rejected)")
      end
      unless over.empty?
        @spool.reject(over)
        @logger.error("audrey publisher: DROPPED #{over.size} spooled event(s) over the bound of #{@max_buffered} events/" \
                      "#{@max_buffered_bytes} bytes (moved to #{@spool.path}.rejected)")
      end
      @spool.rewrite(kept.map(&:line)) if unreadable.positive? || !over.empty?
      @logger.info("audrey publisher: replaying #{kept.size} event(s) from spool #{@spool.path}") unless kept.empty?
    end

    def normalize_urls(url, urls)
      list = Array(urls || url || DEFAULT_URL).map(&:to_s)
      raise ArgumentError, "at least one broker URL is required" if list.empty?

      list
    end

    def monotonic
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def redact(url)
      url.sub(%r{(//[^:/@]*:)[^@/]*@}, '\1***@')
    end

    # Called under @lock.
    def note_error(message)
      @last_error = message
      @last_error_at = Time.now
    end

    # ---- the background thread ---------------------------------------------

    def run
      attempts = 0
      loop do
        batch = next_batch
        break if batch.nil?

        begin
          connect_if_needed
          publish_batch(batch)
          attempts = 0
        rescue StandardError => e
          attempts += 1
          failed(e, attempts)
          backoff(attempts)
        end
      end
    rescue Exception => e # rubocop:disable Lint/RescueException
      @logger.fatal("audrey publisher: background thread died: #{e.class}: #{e.message}") unless e.is_a?(ThreadError)
      raise
    ensure
      disconnect
    end

    # Waits for work; returns the next batch (heartbeat first), or nil when
    # stopping.
    def next_batch
      @lock.synchronize do
        loop do
          return nil if @stopping

          if @reconnect || @session_failure
            # handled by connect_if_needed; a lost idle connection is
            # noticed here
            return [] if @queue.empty? && @heartbeat_entry.nil? && (@reconnect || @session)
          end
          unless @queue.empty? && @heartbeat_entry.nil?
            batch = @queue.first(@batch_size)
            batch.unshift(@heartbeat_entry) if @heartbeat_entry
            return batch
          end
          @work.wait(@lock)
        end
      end
    end

    def connect_if_needed
      reconnect_now, failure = @lock.synchronize do
        r = @reconnect
        f = @session_failure
        @reconnect = false
        [r, f]
      end
      if @session && (reconnect_now || failure || !@session.open?)
        @logger.warn("audrey publisher: connection lost: #{failure.message}") if failure
        disconnect(abrupt: !reconnect_now || failure)
      end
      return if @session

      urls = @lock.synchronize { @urls.dup }
      index = @lock.synchronize { @url_index % urls.size }
      url = urls[index]
      session_id = SecureRandom.hex(6)
      # Bunny::Session.new rather than Bunny.new, which keeps the first
      # session in a global. Recovery is ours (retry loop), not bunny's.
      session = Bunny::Session.new(url,
                                   automatically_recover: false,
                                   recover_from_connection_close: false,
                                   connection_timeout: @connect_timeout,
                                   write_timeout: 10,
                                   continuation_timeout: (@operation_timeout * 1000).to_i,
                                   heartbeat: 15,
                                   connection_name: "audrey-publisher #{@source}",
                                   session_error_handler: SessionErrorHandler.new(self, session_id),
                                   logger: @bunny_logger)
      begin
        session.start
        channel = session.create_channel
        exchange = declare_exchange(channel)
        channel.confirm_select
        returned = []
        exchange.on_return { |_info, properties, _body| @lock.synchronize { returned << properties.message_id } }
      rescue StandardError => e
        @lock.synchronize { @url_index = (index + 1) % urls.size }
        begin
          session.transport&.close
          session.close(false)
        rescue StandardError
          nil
        end
        raise ConnectFailed, "#{redact(url)}: #{e.class.name}: #{e.message}"
      end
      @lock.synchronize do
        @session = session
        @session_id = session_id
        @session_failure = nil
        @channel = channel
        @exchange = exchange
        @returned = returned
        @connected = true
      end
      @logger.info("audrey publisher: connected to #{redact(url)}, exchange #{@exchange_name}")
    end

    def declare_exchange(channel)
      case @declare_exchange
      when :durable then channel.exchange(@exchange_name, type: :topic, durable: true)
      when :passive then channel.exchange(@exchange_name, type: :topic, passive: true)
      else Bunny::Exchange.new(channel, :topic, @exchange_name, no_declare: true)
      end
    end

    # Publishes the batch and waits for its confirms; removes what the
    # broker confirmed (and routed); raises on any failure.
    def publish_batch(batch)
      return if batch.empty?

      channel = @channel
      @lock.synchronize { @returned.clear }
      tags = batch.map do |entry|
        tag = channel.next_publish_seq_no
        @exchange.publish(entry.line,
                          routing_key: entry.type,
                          persistent: true,
                          mandatory: true,
                          content_type: CONTENT_TYPE,
                          message_id: entry.id,
                          type: entry.type,
                          timestamp: Time.now.to_i)
        tag
      end
      wait_for_confirms(channel)
      nacked = channel.nacked_set
      returned = @lock.synchronize { @returned.dup }
      ok = batch.zip(tags).map { |entry, tag| !nacked.include?(tag) && !returned.include?(entry.id) }
      confirmed(batch, ok)
      return if ok.all?

      bad = batch.size - ok.count(true)
      @lock.synchronize do
        @stats[:returned] += returned.size
        @stats[:nacked] += batch.zip(tags).count { |_e, tag| nacked.include?(tag) }
      end
      if returned.any?
        raise Unroutable, "#{returned.size} of #{batch.size} event(s) unroutable: no queue is bound to exchange " \
                          "#{@exchange_name} for #{batch.find { |e| returned.include?(e.id) }.type} " \
                          "(is audrey-reporting running? it declares its queue)"
      end
      raise Nacked, "the broker refused (nack) #{bad} of #{batch.size} event(s)"
    end

    # Bunny's wait_for_confirms, woken every `confirm_timeout` ms at most;
    # gives up when the connection is reported lost or the time is up.
    def wait_for_confirms(channel)
      deadline = monotonic + @confirm_timeout
      begin
        channel.wait_for_confirms
      rescue Timeout::Error
        failure = @lock.synchronize { @session_failure }
        raise ConnectionLost, "connection lost while waiting for confirms: #{failure.message}" if failure
        raise ConnectionLost, "channel closed while waiting for confirms" unless channel.open?
        raise ConfirmTimeout, "no publisher confirm within #{@confirm_timeout} s" if monotonic >= deadline

        retry
      end
    end

    # Removes the confirmed head of the buffer (up to the first failure, to
    # keep the order), updates the spool and wakes flush.
    def confirmed(batch, ok)
      @lock.synchronize do
        removed = 0
        batch.each_with_index do |entry, i|
          break unless ok[i]

          if entry.heartbeat
            @heartbeat_entry = nil if @heartbeat_entry.equal?(entry)
          else
            head = @queue.shift
            raise "audrey publisher: buffer out of order" unless head.equal?(entry)

            @queue_bytes -= entry.line.bytesize
            removed += 1
          end
          @stats[:published] += 1
        end
        if @spool && removed.positive?
          begin
            @spool.confirmed(removed, @queue.map(&:line))
          rescue SystemCallError, IOError => e
            spool_error(e)
          end
        end
        if @last_error && ok.all?
          @logger.info("audrey publisher: publishing again (#{@queue.size} event(s) still buffered)") if @recovering
          @recovering = false
        end
        @drained.broadcast
      end
    end

    def failed(error, attempts)
      message = "#{error.class.name.split('::').last}: #{error.message}"
      @lock.synchronize do
        @stats[:failures] += 1
        changed = @last_error != message || !@recovering
        note_error(message)
        @recovering = true
        level = changed ? Logger::WARN : Logger::DEBUG
        @logger.add(level, "audrey publisher: attempt #{attempts} failed (#{@queue.size} event(s) buffered): #{message}")
      end
      disconnect(abrupt: true) unless error.is_a?(Unroutable) || error.is_a?(Nacked)
    end

    # Sleeps before the next attempt, cut short by reconnect or close.
    def backoff(attempts)
      delay = [@retry_initial * (2**[attempts - 1, 30].min), @retry_max].min
      delay *= (0.8 + 0.2 * rand)
      deadline = monotonic + delay
      @lock.synchronize do
        until @stopping || @reconnect
          left = deadline - monotonic
          break if left <= 0

          @work.wait(@lock, left)
        end
      end
    end

    def session_failed(session_id, error)
      @lock.synchronize do
        return unless session_id == @session_id

        @session_failure = error
        @connected = false
        note_error("connection lost: #{error.message}")
        @work.broadcast
      end
    end

    # Closes the connection: politely (channel and connection close) when
    # it is healthy, at once (the socket) when it failed, so that a dead
    # peer cannot hold the background thread.
    def disconnect(abrupt: false)
      session = @lock.synchronize do
        s = @session
        @session = nil
        @session_id = nil
        @channel = nil
        @exchange = nil
        @connected = false
        abrupt ||= !@session_failure.nil?
        @session_failure = nil
        s
      end
      return unless session

      begin
        session.transport&.close if abrupt || !session.open?
        session.close(false)
      rescue StandardError, Timeout::Error
        nil
      end
    end
  end
end
