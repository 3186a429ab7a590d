# frozen_string_literal: true

module Audrey
  class Publisher
    # Version of this library. Also the default `version` a publisher
    # announces in its heartbeats when the config server gives none.
    VERSION = "0.1.0"
  end
end
