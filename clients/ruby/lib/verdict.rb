# frozen_string_literal: true

# Verdict's Ruby client: Check and PlanFilter over gRPC (Verdict::Client), ActiveRecord scopes
# built from plans (require "verdict/active_record"), and a controller helper in the spirit of
# Pundit (require "verdict/controller").
require "bigdecimal"
require "grpc"
require "google/protobuf/well_known_types"
require_relative "verdict/version"
require_relative "verdict/errors"
require_relative "verdict/stubs"
require_relative "verdict/results"
require_relative "verdict/client"
