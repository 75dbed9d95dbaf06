# frozen_string_literal: true

module Verdict
  VERSION = "0.1.0"
end
