# frozen_string_literal: true

require_relative "../verdict"

module Verdict
  # A controller helper in the spirit of Pundit: `authorize!` for one record, `verdict_scope` for
  # lists, and an after-action check that every action used one of them.
  #
  #   class NotesController < ApplicationController
  #     include Verdict::Controller       # registers after_action :verify_verdict_used
  #
  #     def index = render json: verdict_scope(Note, :search)
  #     def show  = render json: authorize!(Note.find(params[:id]), :read)
  #   end
  #
  # The controller says who calls and how to reach Verdict by defining `verdict_client` (a
  # Verdict::Client) and either `verdict_principal` (the claims of the verified token, a hash) or
  # `verdict_token` (the raw JWT, for Verdict to verify); `verdict_context` (a hash) is optional.
  # Errors: NotAuthorized (answer 403; it carries the Decision), TokenRejected (401),
  # AuthorizationNotPerformed (a bug: an action that neither authorized nor scoped).
  module Controller
    def self.included(base)
      base.after_action(:verify_verdict_used) if base.respond_to?(:after_action)
    end

    # Decides `action` on `record` (a model with verdict_resource, or a resource hash with kind,
    # id and attr); returns the record when allowed, raises NotAuthorized when denied.
    def authorize!(record, action = (respond_to?(:action_name) ? action_name : nil))
      raise ArgumentError, "authorize! needs an action" if action.nil?

      resource = record.respond_to?(:to_verdict_resource) ? record.to_verdict_resource : record.to_h
      result = verdict_client.check(resources: [resource.merge(actions: [action.to_s])], context: verdict_context,
                                    **verdict_caller)
      raise TokenRejected, result.token_error unless result.token_error.empty?

      @verdict_authorized = true
      decision = result.results.fetch(0).actions.fetch(action.to_s)
      raise NotAuthorized.new(decision, record: record, action: action) unless decision.allow?

      record
    end

    # The rows of `model` the caller may perform `action` on (Model.verdict_scope).
    def verdict_scope(model, action = :search, known_attr: nil)
      relation = model.verdict_scope(verdict_client, action: action, context: verdict_context, known_attr: known_attr,
                                                     **verdict_caller)
      @verdict_scoped = true
      relation
    end

    # For actions that need no decision (a health page): the after-action check lets them pass.
    def skip_verdict
      @verdict_skipped = true
    end

    def verdict_authorized?
      @verdict_authorized == true
    end

    def verdict_scoped?
      @verdict_scoped == true
    end

    # The after-action check: raises AuthorizationNotPerformed unless the action called
    # authorize!, verdict_scope or skip_verdict.
    def verify_verdict_used
      return if verdict_authorized? || verdict_scoped? || @verdict_skipped

      name = respond_to?(:action_name) ? "#{self.class.name}##{action_name}" : self.class.name
      raise AuthorizationNotPerformed, "#{name} neither authorized (authorize!) nor scoped (verdict_scope)"
    end

    def verdict_context
      nil
    end

    private

    def verdict_caller
      token = respond_to?(:verdict_token, true) ? verdict_token : nil
      return { token: token } if token

      principal = respond_to?(:verdict_principal, true) ? verdict_principal : nil
      raise Error, "#{self.class.name} defines neither verdict_principal nor verdict_token" unless principal

      { principal: principal }
    end
  end
end
