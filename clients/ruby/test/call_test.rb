# frozen_string_literal: true

# Verdict::Client's deadlines and retries, against a real gRPC server on a real socket (an
# in-process Authorizer whose answers the test scripts: UNAVAILABLE some times, then an answer; a
# call that blocks until released; INVALID_ARGUMENT), against a port where nothing listens, and
# through a proxy that drops the first connection (a daemon restarting).
#
#   ruby clients/ruby/test/call_test.rb
require "minitest/autorun"
require "socket"
require_relative "../lib/verdict"

Verdict::Stubs.load

class ScriptedAuthorizer < Verdict::V1::Authorizer::Service
  attr_reader :calls

  def initialize(script)
    super()
    @script = script
    @calls = 0
    @lock = Mutex.new
  end

  def check(request, _call)
    n = @lock.synchronize { @calls += 1 }
    step = @script.call(n)
    raise step if step.is_a?(Exception)

    step.pop if step.is_a?(Queue)
    Verdict::V1::CheckResponse.new(request_id: request.request_id, policy_version: "v", results: [
      Verdict::V1::ResourceResult.new(
        resource: Verdict::V1::ResourceIdentity.new(kind: "K", id: "1"),
        actions: { "read" => Verdict::V1::ActionDecision.new(effect: :EFFECT_ALLOW, policy: "p", rule: "r", reason: "ok") }
      )
    ])
  end
end

class CallTest < Minitest::Test
  RESOURCE = { kind: "K", id: "1", attr: { n: 1 } }.freeze
  PRINCIPAL = { id: "u" }.freeze

  def serve(script)
    service = ScriptedAuthorizer.new(script)
    @server = GRPC::RpcServer.new(pool_size: 4)
    port = @server.add_http2_port("127.0.0.1:0", :this_port_is_insecure)
    @server.handle(service)
    @thread = Thread.new { @server.run }
    @server.wait_till_running(10) or raise "the test server did not start"
    [service, "127.0.0.1:#{port}"]
  end

  def teardown
    @server&.stop
    @thread&.join
  end

  def elapsed
    start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    yield
  ensure
    @elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - start
  end

  def test_unavailable_is_retried_until_an_answer
    service, addr = serve(->(n) { n <= 2 ? GRPC::Unavailable.new("restarting") : :answer })
    client = Verdict::Client.new(addr, retries: 2, backoff: 0.01)
    decision = client.decide(RESOURCE, "read", principal: PRINCIPAL)
    assert_equal Verdict::Decision.new(effect: :allow, policy: "p", rule: "r", reason: "ok"), decision
    assert_equal 3, service.calls
  end

  def test_retries_are_bounded
    service, addr = serve(->(_) { GRPC::Unavailable.new("down") })
    client = Verdict::Client.new(addr, retries: 3, backoff: 0.01, timeout: 5)
    error = assert_raises(Verdict::Unavailable) { client.decide(RESOURCE, "read", principal: PRINCIPAL) }
    assert_equal GRPC::Core::StatusCodes::UNAVAILABLE, error.code
    assert_includes error.message, "down"
    assert_equal 4, service.calls, "one call and three retries"
  end

  # A TCP proxy to `port` that closes the first connection at once and forwards the others.
  def dropping_proxy(port)
    listener = TCPServer.new("127.0.0.1", 0)
    @proxy = listener
    dropped = 0
    Thread.new do
      loop do
        client = listener.accept
        if dropped.zero?
          dropped += 1
          client.close
          next
        end
        upstream = TCPSocket.new("127.0.0.1", port)
        [[client, upstream], [upstream, client]].each do |from, to|
          Thread.new do
            IO.copy_stream(from, to)
          rescue IOError, SystemCallError
            nil
          ensure
            [from, to].each { |s| s.close unless s.closed? }
          end
        end
      end
    rescue IOError, SystemCallError
      nil
    end
    "127.0.0.1:#{listener.addr[1]}"
  end

  def test_a_retry_within_a_second_reaches_a_server_after_a_dropped_connection
    service, addr = serve(->(_) { :answer })
    proxy = dropping_proxy(Integer(addr.split(":").last))
    # Four retries after 0.05-0.1, 0.1-0.2, 0.1-0.2 and 0.1-0.2 s: 0.35 to 0.7 s in all, within
    # grpc's own reconnect backoff after the dropped connection (0.8 to 1.2 s) unless the client
    # sets it.
    client = Verdict::Client.new(proxy, retries: 4, backoff: 0.1, max_backoff: 0.2, timeout: 5)
    decision = client.decide(RESOURCE, "read", principal: PRINCIPAL)
    assert_equal :allow, decision.effect
    assert_equal 1, service.calls
  ensure
    @proxy&.close
  end

  def test_other_errors_are_not_retried
    service, addr = serve(->(_) { GRPC::InvalidArgument.new("principal.id is required") })
    client = Verdict::Client.new(addr, retries: 3, backoff: 0.01)
    error = assert_raises(Verdict::InvalidRequest) { client.decide(RESOURCE, "read", principal: PRINCIPAL) }
    assert_includes error.message, "principal.id is required"
    assert_equal 1, service.calls
  end

  def test_a_call_past_its_deadline_fails_and_is_not_retried
    release = Queue.new
    service, addr = serve(->(_) { release })
    client = Verdict::Client.new(addr, timeout: 0.3, retries: 3)
    error = elapsed { assert_raises(Verdict::Unavailable) { client.decide(RESOURCE, "read", principal: PRINCIPAL) } }
    release.push(:go)
    assert_equal GRPC::Core::StatusCodes::DEADLINE_EXCEEDED, error.code
    assert_operator @elapsed, :>=, 0.25
    assert_operator @elapsed, :<, 2.0
    assert_equal 1, service.calls
  end

  def test_retries_never_outlast_the_deadline
    # Nothing listens on this port (bound, then closed): every attempt is UNAVAILABLE at once.
    socket = TCPServer.new("127.0.0.1", 0)
    port = socket.addr[1]
    socket.close
    client = Verdict::Client.new("127.0.0.1:#{port}", timeout: 0.5, retries: 1000, backoff: 0.02, max_backoff: 0.1)
    error = elapsed { assert_raises(Verdict::Unavailable) { client.decide(RESOURCE, "read", principal: PRINCIPAL) } }
    assert_includes [GRPC::Core::StatusCodes::UNAVAILABLE, GRPC::Core::StatusCodes::DEADLINE_EXCEEDED], error.code
    assert_operator @elapsed, :<, 2.0
  end

  def test_the_caller_is_a_principal_or_a_token
    client = Verdict::Client.new("127.0.0.1:1")
    assert_raises(ArgumentError) { client.decide(RESOURCE, "read") }
    assert_raises(ArgumentError) { client.decide(RESOURCE, "read", principal: PRINCIPAL, token: "t") }
    assert_raises(ArgumentError) { client.decide(RESOURCE, "read", principal: { id: "u", role: ["x"] }) }
  end
end
