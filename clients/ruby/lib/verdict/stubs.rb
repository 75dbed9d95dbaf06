# frozen_string_literal: true

require "digest"
require "fileutils"

module Verdict
  # The gRPC stubs, generated from the repository's proto/ by grpc_tools_ruby_protoc and never
  # committed. They are made when missing or when proto/ changed (a hash of the .proto files is
  # kept next to them), into $VERDICT_STUBS_DIR or clients/ruby/generated/. A gem built for
  # installation elsewhere carries them in lib/verdict/generated/ (`ruby generate.rb
  # lib/verdict/generated` before `gem build`).
  module Stubs
    PROTO_DIR = File.expand_path("../../../../proto", __dir__)
    PROTO_FILES = ["verdict/v1/authorizer.proto", "verdict/v1/admin.proto"].freeze
    STAMP = ".proto-hash"
    PACKAGED = File.expand_path("generated", __dir__)

    module_function

    def proto_hash
      digest = Digest::SHA256.new
      PROTO_FILES.each do |name|
        digest << name
        digest << File.binread(File.join(PROTO_DIR, name))
      end
      digest.hexdigest
    end

    def default_dir
      ENV.fetch("VERDICT_STUBS_DIR", "").then do |dir|
        dir.empty? ? File.expand_path("../../generated", __dir__) : dir
      end
    end

    # Runs grpc_tools_ruby_protoc (Debian's ruby-grpc-tools, or the grpc-tools gem) on proto/.
    def generate(out_dir)
      FileUtils.mkdir_p(out_dir)
      protoc = ENV.fetch("VERDICT_RUBY_PROTOC", "grpc_tools_ruby_protoc")
      ok = system(protoc, "-I#{PROTO_DIR}", "--ruby_out=#{out_dir}", "--grpc_out=#{out_dir}", *PROTO_FILES)
      raise Verdict::Error, "#{protoc} failed on #{PROTO_DIR}" unless ok

      File.write(File.join(out_dir, STAMP), proto_hash)
    end

    # Makes the generated modules loadable (Verdict::V1::CheckRequest, Verdict::V1::Authorizer::Stub),
    # generating them first if proto/ is here and they are missing or stale.
    def load(out_dir = default_dir)
      dir =
        if File.directory?(PROTO_DIR)
          stamp = File.join(out_dir, STAMP)
          generate(out_dir) unless File.exist?(stamp) && File.read(stamp) == proto_hash
          out_dir
        elsif File.directory?(PACKAGED)
          PACKAGED
        else
          raise Verdict::Error, "no proto/ at #{PROTO_DIR} and no generated stubs in #{PACKAGED}"
        end
      $LOAD_PATH.unshift(dir) unless $LOAD_PATH.include?(dir)
      require "verdict/v1/authorizer_services_pb"
      require "verdict/v1/admin_services_pb"
    end
  end
end
