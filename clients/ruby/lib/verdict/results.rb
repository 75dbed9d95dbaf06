# frozen_string_literal: true

module Verdict
  # The decision on one action of one resource. `effect` is :allow or :deny; `policy` and `rule`
  # name what decided (empty for a default deny); `reason` is always set.
  Decision = Struct.new(:effect, :policy, :rule, :reason, keyword_init: true) do
    def allow?
      effect == :allow
    end

    def deny?
      !allow?
    end
  end

  # The decisions on one resource: action name => Decision.
  ResourceResult = Struct.new(:kind, :id, :actions, keyword_init: true)

  # The answer to a Check: one ResourceResult per resource, in request order.
  CheckResult = Struct.new(:request_id, :policy_version, :results, :token_error, keyword_init: true) do
    # The decision for (kind, id, action) of the resource at `index` (default: the only one with
    # this kind and id; ambiguous ids raise rather than answer for another resource).
    def decision(kind, id, action, index: nil)
      result =
        if index
          results.fetch(index)
        else
          matching = results.select { |r| r.kind == kind && r.id == id.to_s }
          raise ArgumentError, "#{matching.size} results for #{kind}/#{id}: pass index:" unless matching.size == 1

          matching.first
        end
      raise ArgumentError, "result #{index} is #{result.kind}/#{result.id}" unless result.kind == kind && result.id == id.to_s

      result.actions.fetch(action.to_s) { raise ArgumentError, "no decision for #{action}" }
    end

    def allowed?(kind, id, action, index: nil)
      decision(kind, id, action, index: index).allow?
    end
  end

  # A node of a filter tree. `op` is one of :eq :ne :lt :le :gt :ge (attribute op value), :in
  # (attribute among values), :contains (the list attribute holds value), :exists (present and not
  # null), :and :or (operands), :not (operands[0]). `attribute` is a dotted path below R.attr.
  Filter = Struct.new(:op, :attribute, :value, :values, :operands, :policy, :rule, keyword_init: true) do
    # The one-line form `verdict plan` prints: `practice_id == "7"`, `(a && !b)`.
    def to_s
      case op
      when :and, :or
        "(#{operands.map(&:to_s).join(op == :and ? ' && ' : ' || ')})"
      when :not then "!#{operands[0]}"
      when :exists then "exists(#{attribute})"
      when :in then "#{attribute} in [#{values.map { |v| Filter.literal(v) }.join(', ')}]"
      when :contains then "#{attribute} contains #{Filter.literal(value)}"
      else "#{attribute} #{Filter::SYMBOLS.fetch(op)} #{Filter.literal(value)}"
      end
    end

    # Every attribute the tree reads.
    def attributes
      own = attribute.to_s.empty? ? [] : [attribute]
      (own + operands.flat_map(&:attributes)).uniq
    end
  end
  Filter::SYMBOLS = { eq: "==", ne: "!=", lt: "<", le: "<=", gt: ">", ge: ">=" }.freeze

  def Filter.literal(value)
    case value
    when Float then value == value.floor && value.abs < 1e15 ? value.to_i.to_s : value.to_s
    when nil then "null"
    else JSON.generate(value)
    end
  end

  # The answer to a PlanFilter. `kind` is :always_allowed, :always_denied or :conditional;
  # `filter` (a Filter) is set when conditional. `token_error` / `schema_violation` say why a plan
  # is :always_denied when the token or the request was refused.
  PlanResult = Struct.new(:request_id, :policy_version, :kind, :filter, :token_error, :schema_violation,
                          keyword_init: true) do
    def always_allowed?
      kind == :always_allowed
    end

    def always_denied?
      kind == :always_denied
    end

    def conditional?
      kind == :conditional
    end
  end
end
