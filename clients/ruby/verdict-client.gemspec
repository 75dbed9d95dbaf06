# frozen_string_literal: true

require_relative "lib/verdict/version"

Gem::Specification.new do |spec|
  spec.name = "verdict-client"
  spec.version = Verdict::VERSION
  spec.summary = "Verdict's Ruby client: Check and PlanFilter over gRPC, ActiveRecord scopes, a controller helper"
  spec.authors = ["Verdict developers"]
  spec.license = "Apache-2.0"
  spec.required_ruby_version = ">= 3.1"
  # The stubs are generated from proto/ (see lib/verdict/stubs.rb): run
  # `ruby generate.rb lib/verdict/generated` before `gem build` to ship them.
  spec.files = Dir["lib/**/*.rb", "generate.rb", "README.md"]
  spec.require_paths = ["lib"]
  spec.add_dependency "google-protobuf", ">= 3.21"
  spec.add_dependency "grpc", ">= 1.51"
  # Only for require "verdict/active_record" and "verdict/controller".
  spec.add_development_dependency "activerecord", ">= 6.1"
end
