# frozen_string_literal: true

require "fileutils"
require "json"

module Audrey
  # Raised when another live publisher (this process or another one) holds
  # the spool file: two writers would corrupt it.
  class SpoolLocked < StandardError; end

  # The on-disk half of the publisher's buffer: a JSON Lines file holding,
  # one CloudEvent per line and in publishing order, the events not yet
  # confirmed by the broker (plus, at its head, possibly a few already
  # confirmed ones, re-published after a crash: the service deduplicates
  # them). Being plain CloudEvents JSON Lines, the file can also be read by
  # `audrey-reporting import` as a last resort.
  #
  # The publisher appends each event here before its method returns, and
  # tells the spool when a prefix of it has been confirmed: the file is
  # truncated when nothing is pending, and rewritten (temporary file + rename)
  # once the confirmed prefix is large, so its size stays bounded by the
  # pending events.
  #
  # A lock file (`PATH.lock`, flock) keeps a second publisher off the same
  # spool. Lines that cannot be parsed on load (a line cut by a crash, say)
  # are moved to `PATH.rejected` for an operator.
  #
  # Not thread-safe by itself: the publisher calls it under its own lock.
  class Spool
    # Rewrite the file once at least this many confirmed lines precede the
    # pending ones (and they are at least as many as the pending ones).
    COMPACT_AFTER = 1000

    attr_reader :path

    def initialize(path, fsync: false)
      @path = File.expand_path(path)
      @fsync = fsync
      FileUtils.mkdir_p(File.dirname(@path))
      @lock = File.open("#{@path}.lock", File::RDWR | File::CREAT, 0o600)
      unless @lock.flock(File::LOCK_EX | File::LOCK_NB)
        @lock.close
        raise SpoolLocked, "spool #{@path} is in use by another publisher"
      end
      @file = nil
      @confirmed = 0   # confirmed lines at the head of the file
      @dirty = false   # the file no longer mirrors the pending events
    end

    # Reads the pending events a previous run left. Returns
    # `[lines, rejected]`: the valid lines (JSON objects with an id and a
    # type) in order, and how many lines were unreadable (moved to
    # `PATH.rejected`).
    def load
      lines = []
      bad = []
      if File.exist?(@path)
        File.foreach(@path, chomp: true) do |line|
          next if line.strip.empty?

          event = begin
            JSON.parse(line)
          rescue JSON::ParserError
            nil
          end
          if event.is_a?(Hash) && event["id"].is_a?(String) && event["type"].is_a?(String)
            lines << [line, event]
          else
            bad << line
          end
        end
      end
      reject(bad) unless bad.empty?
      [lines, bad.size]
    end

    # Appends lines that a bound kept out of the buffer (or unreadable ones)
    # to `PATH.rejected`, so that nothing is lost without a trace.
    def reject(lines)
      File.open("#{@path}.rejected", "a", 0o600) { |f| lines.each { |l| f.puts(l) } }
    end

    # Replaces the file with exactly `lines` (the pending events).
    def rewrite(lines)
      tmp = "#{@path}.tmp"
      File.open(tmp, "w", 0o600) do |f|
        lines.each { |l| f.write(l, "\n") }
        f.flush
        f.fsync if @fsync
      end
      @file&.close
      @file = nil
      File.rename(tmp, @path)
      @confirmed = 0
      @dirty = false
    end

    # Appends one event line; flushed to the OS (and fsync'ed when asked).
    def append(line)
      if @dirty
        # an earlier write failed: the caller rewrites the whole file on the
        # next confirmation; appending now would misplace this line
        raise IOError, "spool #{@path} needs a rewrite after an earlier error"
      end

      f = file
      f.write(line, "\n")
      f.flush
      f.fsync if @fsync
    rescue SystemCallError, IOError
      @dirty = true
      raise
    end

    # `count` lines at the head were confirmed; `pending` are the lines
    # still waiting (in order). Truncates or compacts the file when useful.
    def confirmed(count, pending)
      if @dirty
        rewrite(pending)
      elsif pending.empty?
        file.truncate(0)
        @confirmed = 0
      else
        @confirmed += count
        rewrite(pending) if @confirmed >= COMPACT_AFTER && @confirmed >= pending.size
      end
    rescue SystemCallError, IOError
      @dirty = true
      raise
    end

    def dirty?
      @dirty
    end

    # Closes the file and releases the lock; the pending lines stay for the
    # next publisher on this path.
    def close
      @file&.close
      @file = nil
      @lock.flock(File::LOCK_UN)
      @lock.close
    end

    private

    def file
      @file ||= File.open(@path, File::WRONLY | File::APPEND | File::CREAT, 0o600)
    end
  end
end
