# frozen_string_literal: true

module Verdict
  # Every error this gem raises.
  class Error < StandardError; end

  # A call failed: `code` is the gRPC status code (GRPC::Core::StatusCodes), `details` the server's
  # message.
  class CallError < Error
    attr_reader :code, :details

    def initialize(code, details)
      @code = code
      @details = details
      super("#{CallError.name_of(code)}: #{details}")
    end

    def self.name_of(code)
      GRPC::Core::StatusCodes.constants.find { |c| GRPC::Core::StatusCodes.const_get(c) == code }&.to_s || code.to_s
    end
  end

  # INVALID_ARGUMENT: the request was malformed (the message names the field).
  class InvalidRequest < CallError; end

  # FAILED_PRECONDITION from PlanFilter: a rule's condition cannot be expressed as a filter (the
  # message names the policy and rule). Never answered with a wider filter.
  class PlanUnsupported < CallError; end

  # UNAVAILABLE after every retry, DEADLINE_EXCEEDED, or any other failure of the call.
  class Unavailable < CallError; end

  # The request's token was rejected (`token_error` says why): answer 401, not 403.
  class TokenRejected < Error
    attr_reader :token_error

    def initialize(token_error)
      @token_error = token_error
      super("token rejected: #{token_error}")
    end
  end

  # A plan cannot be turned into a query for a model: an attribute without a column, a column the
  # table lacks, a type the column cannot hold. Raised, never a silently dropped clause.
  class MappingError < Error; end

  # authorize! found the action denied.
  class NotAuthorized < Error
    attr_reader :decision, :record, :action

    def initialize(decision, record: nil, action: nil)
      @decision = decision
      @record = record
      @action = action
      super("not authorized to #{action}: #{decision&.reason}")
    end
  end

  # A controller action finished without authorize! or verdict_scope (verify_authorized).
  class AuthorizationNotPerformed < Error; end
end
