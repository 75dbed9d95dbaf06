# frozen_string_literal: true

require "json"
require "securerandom"

module Verdict
  # A client of verdict.v1.Authorizer: Check and PlanFilter, plain hashes in, typed results out.
  #
  #   verdict = Verdict::Client.new("127.0.0.1:50051", timeout: 2.0, retries: 2)
  #   verdict.check(principal: { id: "dr-house", roles: ["physician"] },
  #                 resources: [{ kind: "Patient", id: "123", attr: { practice_id: "7" }, actions: ["read"] }])
  #
  # Every call has a deadline (`timeout` seconds, for the call and its retries together). Check and
  # PlanFilter are idempotent, so a call answered UNAVAILABLE (the daemon restarting, a connection
  # refused) is tried again after an exponential backoff with jitter, at most `retries` times and
  # never past the deadline; every other failure raises at once. Errors are Verdict::CallError
  # subclasses: InvalidRequest, PlanUnsupported, Unavailable. The channel reconnects on the same
  # backoff: grpc's own starts at 1 s, during which every call fails at once, so a quick retry
  # would never reach a daemon that came back.
  #
  # The caller is named per call, as `principal:` (the claims of its verified token) or `token:`
  # (the raw JWT, for Verdict to verify); `token:` given to new() is used when a call names neither.
  class Client
    attr_reader :timeout, :retries

    def initialize(target, credentials: :this_channel_is_insecure, timeout: 2.0, retries: 2, backoff: 0.05,
                   max_backoff: 1.0, token: nil, stub: nil)
      Verdict::Stubs.load
      @timeout = Float(timeout)
      @retries = Integer(retries)
      @backoff = Float(backoff)
      @max_backoff = Float(max_backoff)
      @token = token
      raise ArgumentError, "timeout must be positive" unless @timeout.positive?
      raise ArgumentError, "retries must be >= 0" if @retries.negative?
      raise ArgumentError, "need 0 < backoff <= max_backoff" unless @backoff.positive? && @backoff <= @max_backoff

      @stub = stub || Verdict::V1::Authorizer::Stub.new(
        target, credentials,
        channel_args: { "grpc.initial_reconnect_backoff_ms" => [(@backoff * 1000).to_i, 1].max,
                        "grpc.max_reconnect_backoff_ms" => [(@max_backoff * 1000).to_i, 1].max }
      )
    end

    # Decides every action of every resource. `resources`: hashes with kind, id, attr and actions.
    def check(resources:, principal: nil, token: nil, context: nil, request_id: nil)
      request = Verdict::V1::CheckRequest.new(
        request_id: request_id || SecureRandom.uuid,
        resources: resources.map { |r| resource_check(r) },
        **caller_fields(principal, token),
        **(context ? { context: Client.struct(context) } : {})
      )
      response = call(:check, request)
      CheckResult.new(
        request_id: response.request_id,
        policy_version: response.policy_version,
        token_error: response.token_error,
        results: response.results.map do |r|
          ResourceResult.new(kind: r.resource.kind, id: r.resource.id,
                             actions: r.actions.keys.to_h { |a| [a, Client.decision(r.actions[a])] })
        end
      )
    end

    # The decision on one action of one resource.
    def decide(resource, action, principal: nil, token: nil, context: nil)
      one = resource.merge(actions: [action.to_s])
      result = check(resources: [one], principal: principal, token: token, context: context)
      result.results.fetch(0).actions.fetch(action.to_s)
    end

    # Which resources of `kind` may the caller perform `action` on: a PlanResult.
    def plan_filter(kind, action, principal: nil, token: nil, context: nil, known_attr: nil, request_id: nil)
      request = Verdict::V1::PlanFilterRequest.new(
        request_id: request_id || SecureRandom.uuid,
        resource_kind: kind.to_s,
        action: action.to_s,
        **caller_fields(principal, token),
        **(context ? { context: Client.struct(context) } : {}),
        **(known_attr ? { known_attr: Client.struct(known_attr) } : {})
      )
      response = call(:plan_filter, request)
      PlanResult.new(
        request_id: response.request_id,
        policy_version: response.policy_version,
        kind: PLAN_KINDS.fetch(response.kind) { raise Error, "unknown plan kind #{response.kind}" },
        filter: response.filter && Client.filter(response.filter),
        token_error: response.token_error,
        schema_violation: response.schema_violation
      )
    end

    PLAN_KINDS = {
      PLAN_KIND_ALWAYS_ALLOWED: :always_allowed,
      PLAN_KIND_ALWAYS_DENIED: :always_denied,
      PLAN_KIND_CONDITIONAL: :conditional
    }.freeze
    EFFECTS = { EFFECT_ALLOW: :allow, EFFECT_DENY: :deny }.freeze
    RETRIED = [GRPC::Core::StatusCodes::UNAVAILABLE].freeze

    # Calls `method` with the deadline, retrying UNAVAILABLE.
    def call(method, request)
      deadline = now + @timeout
      attempt = 0
      begin
        @stub.public_send(method, request, deadline: Time.now + (deadline - now))
      rescue GRPC::BadStatus => e
        pause = [@backoff * (2**attempt), @max_backoff].min * (0.5 + (rand / 2))
        if RETRIED.include?(e.code) && attempt < @retries && now + pause < deadline
          attempt += 1
          sleep(pause)
          retry
        end
        raise Client.error(e)
      end
    end

    def self.error(e)
      klass = case e.code
              when GRPC::Core::StatusCodes::INVALID_ARGUMENT then InvalidRequest
              when GRPC::Core::StatusCodes::FAILED_PRECONDITION then PlanUnsupported
              else Unavailable
              end
      klass.new(e.code, e.details)
    end

    def self.decision(d)
      Decision.new(effect: EFFECTS.fetch(d.effect) { raise Error, "unknown effect #{d.effect}" },
                   policy: d.policy, rule: d.rule, reason: d.reason)
    end

    OPS = %i[unspecified eq ne lt le gt ge in contains exists and or not].freeze

    def self.filter(f)
      op = OPS[Verdict::V1::FilterOp.resolve(f.op)] if f.op.is_a?(Symbol)
      op ||= OPS[f.op]
      raise Error, "unknown filter op #{f.op}" if op.nil? || op == :unspecified

      Filter.new(op: op, attribute: f.attribute.empty? ? nil : f.attribute,
                 value: f.value&.to_ruby(true), values: f.values.map { |v| v.to_ruby(true) },
                 operands: f.operands.map { |o| filter(o) },
                 policy: f.policy.empty? ? nil : f.policy, rule: f.rule.empty? ? nil : f.rule)
    end

    # A Ruby hash (symbol or string keys, nested) as a google.protobuf.Struct.
    def self.struct(hash)
      raise ArgumentError, "expected a Hash, got #{hash.class}" unless hash.is_a?(Hash)

      Google::Protobuf::Struct.from_hash(plain(hash))
    end

    def self.plain(value)
      case value
      when Hash then value.to_h { |k, v| [k.to_s, plain(v)] }
      when Array then value.map { |v| plain(v) }
      when Symbol then value.to_s
      when Integer then value.to_f
      when BigDecimal then value.to_f
      else value
      end
    end

    private

    def now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def caller_fields(principal, token)
      token ||= @token if principal.nil?
      raise ArgumentError, "name the caller: principal: or token:, not both" if principal && token
      raise ArgumentError, "name the caller: principal: or token:" unless principal || token

      token ? { token: token } : { principal: principal_message(principal) }
    end

    def principal_message(p)
      p = p.transform_keys(&:to_sym)
      unknown = p.keys - %i[id roles capabilities scopes client_id attr]
      raise ArgumentError, "unknown principal fields #{unknown}" unless unknown.empty?

      Verdict::V1::Principal.new(
        id: p.fetch(:id).to_s, roles: Array(p[:roles]).map(&:to_s),
        capabilities: Array(p[:capabilities]).map(&:to_s), scopes: Array(p[:scopes]).map(&:to_s),
        client_id: p[:client_id].to_s, **(p[:attr] ? { attr: Client.struct(p[:attr]) } : {})
      )
    end

    def resource_check(r)
      r = r.transform_keys(&:to_sym)
      actions = Array(r.fetch(:actions) { raise ArgumentError, "a resource needs actions:" }).map(&:to_s)
      Verdict::V1::ResourceCheck.new(
        resource: Verdict::V1::Resource.new(kind: r.fetch(:kind).to_s, id: r[:id].to_s,
                                            **(r[:attr] ? { attr: Client.struct(r[:attr]) } : {})),
        actions: actions
      )
    end
  end
end
