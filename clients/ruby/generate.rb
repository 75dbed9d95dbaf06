# frozen_string_literal: true

# Generates Verdict's Ruby gRPC stubs from proto/ (see lib/verdict/stubs.rb):
#   ruby clients/ruby/generate.rb [OUT_DIR]
require_relative "lib/verdict/errors"
require_relative "lib/verdict/stubs"

dir = ARGV[0] || Verdict::Stubs.default_dir
Verdict::Stubs.generate(dir)
puts "stubs generated in #{dir}"
