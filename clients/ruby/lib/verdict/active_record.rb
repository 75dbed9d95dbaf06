# frozen_string_literal: true

require "active_record"
require_relative "../verdict"
require_relative "schema"

module Verdict
  class << self
    # The schema models use unless their verdict_resource names another (Verdict::Schema).
    attr_accessor :schema
  end

  # How one model's rows are a kind's resources: attribute path => column, declared once per model
  # (`verdict_resource`), checked against the table and the schema when first used, and used both
  # ways: to turn a plan into a relation (Arel nodes, literals as bound parameters) and to turn a
  # record into the resource Check decides on (`to_verdict_resource`).
  #
  # The relation selects exactly the rows Check allows when each is sent as its record reads
  # (NULL columns absent), the property clients/ruby/test/scope_property_test.rb proves against the
  # daemon on SQLite and PostgreSQL. Its rules, those of the filter tree (src/filter/mod.rs):
  # - a comparison on a NULL column is false, and so is one between a column and a literal of
  #   another type (`!=` is then true on a non-NULL column): decided here from the column's type,
  #   never left to the database, which would cast "7" and 7 into each other;
  # - `not` is plain negation: its operand is wrapped in COALESCE(..., FALSE), so that NOT of a
  #   comparison on a NULL column is true, as in Check, and never NULL;
  # - `exists` is IS NOT NULL (`has()`, `!= null`), `contains` needs a JSON array column and an
  #   element of the literal's JSON type; strings order by code point (COLLATE "C" on PostgreSQL);
  # - a list column is absent where it is NULL or holds JSON null (which the record reads as nil);
  #   one holding text that is not JSON (SQLite, written by raw SQL) is a value that is no list:
  #   present, containing nothing, fitting no list type, and the record sends its text. The JSON
  #   functions only ever see valid JSON (CASE WHEN json_valid(...)), so such a row never fails
  #   the query;
  # - without a schema declaring it, a list attribute the filter compares (contains, ==, in) must
  #   hold a list or nothing: a row holding a JSON scalar, an object or such text there is left
  #   out, where Check's condition would fail with an error the filter cannot express (fail
  #   closed: Check may allow some of those rows, an `||` absorbing the error; never the reverse).
  # With a schema, the relation also holds what Check requires of a resource before any rule runs,
  # for every mapped attribute: required ones are not NULL, non-empty strings and lists are not
  # empty, enum values are declared ones, whole numbers are whole and within 2^53, list elements
  # have their type. So ALWAYS_ALLOWED is every row that fits the schema (`all` without a schema).
  class Mapping
    TYPES = {
      string: :string, text: :string, boolean: :bool, integer: :number, bigint: :number,
      float: :number, decimal: :number, json: :list, jsonb: :list
    }.freeze
    # The column types a declared type fits.
    FITS = {
      string: %i[string], enum: %i[string], bool: %i[bool], double: %i[number], int: %i[number], list: %i[list]
    }.freeze
    EXACT = 2**53

    attr_reader :model, :kind, :columns, :schema

    def initialize(model, kind, columns, schema)
      @model = model
      @kind = kind.to_s
      raise ArgumentError, "verdict_resource needs columns: attribute => column" if columns.nil? || columns.empty?

      @columns = columns.to_h { |attribute, column| [attribute.to_s, column.to_s] }
      @schema = schema
    end

    # Checks the mapping against the table and the schema (once; needs the database connection).
    # Raises MappingError naming the problem.
    def validate!
      return self if @validated

      table = model.columns_hash
      @classes = @columns.to_h do |attribute, column|
        sql = table[column] or raise MappingError, "#{where} maps #{attribute.inspect} to column #{column.inspect}, which #{model.table_name} lacks"
        klass = TYPES[sql.type] or raise MappingError, "#{where}: column #{column} is #{sql.type}, which no attribute can be"
        [attribute, klass]
      end
      @declared = {}
      if schema
        declared = schema.kind(kind).attributes
        @columns.each_key do |attribute|
          a = declared[attribute] or raise MappingError, "#{where}: attribute #{attribute.inspect} is not declared for kind #{kind} in the schema (declared: #{declared.keys.join(', ')})"
          unless FITS.fetch(a.type, []).include?(@classes[attribute])
            raise MappingError, "#{where}: attribute #{attribute} is #{a.type} in the schema, column #{@columns[attribute]} is #{table[@columns[attribute]].type}"
          end

          @declared[attribute] = a
        end
        missing = declared.values.select(&:required).map(&:path) - @columns.keys
        unless missing.empty?
          raise MappingError, "#{where}: the schema requires #{missing.join(', ')} of every #{kind}, with no column: Check would deny every row"
        end
      end
      @validated = true
      self
    end

    # The relation of the rows the plan (a PlanResult) selects.
    def relation(plan)
      validate!
      raise TokenRejected, plan.token_error unless plan.token_error.to_s.empty?

      case plan.kind
      when :always_denied then model.none
      when :always_allowed then guarded(nil)
      when :conditional then guarded(Build.new(self).node(plan.filter), plan.filter)
      else raise Error, "unknown plan kind #{plan.kind.inspect}"
      end
    end

    # The resource Check decides on for a record: its kind, id and mapped attributes (NULL columns
    # left out: absent).
    def resource(record)
      validate!
      attr = {}
      @columns.each do |attribute, column|
        value = record.read_attribute(column)
        value = unparsed(record, column) if value.nil? && @classes[attribute] == :list
        next if value.nil?

        value = value.to_f if value.is_a?(BigDecimal)
        *parents, leaf = attribute.split(".")
        parents.reduce(attr) { |h, p| h[p] ||= {} }[leaf] = value
      end
      { kind: kind, id: record.id.to_s, attr: attr }
    end

    def column_of(attribute)
      column = @columns.fetch(attribute) do
        raise MappingError, "#{where}: the plan compares attribute #{attribute.inspect}, which has no column (mapped: #{@columns.keys.join(', ')})"
      end
      [model.arel_table[column], @classes.fetch(attribute)]
    end

    def postgres?
      @postgres = model.connection.adapter_name.match?(/postg/i) if @postgres.nil?
      @postgres
    end

    def where
      "#{model.name} (verdict_resource #{kind.inspect})"
    end

    private

    # A list column's text that is not JSON, which ActiveRecord's JSON type reads as nil: Check
    # gets the text (a value that is no list, as the relation sees it), never an absent attribute
    # a `!has()` rule would allow. nil for NULL and JSON null.
    def unparsed(record, column)
      raw = record.read_attribute_before_type_cast(column)
      return unless raw.is_a?(String)

      ActiveSupport::JSON.decode(raw)
      nil
    rescue StandardError
      raw.dup.force_encoding(Encoding::UTF_8).scrub
    end

    def guarded(node, filter = nil)
      build = Build.new(self)
      nodes = build.guards(@declared) + (filter ? build.lists_only(filter, @declared) : []) + [node].compact
      nodes.empty? ? model.all : model.where(nodes.size == 1 ? nodes[0] : Arel::Nodes::And.new(nodes))
    end
  end

  # Builds Arel nodes for a Mapping: the filter tree, and the schema's guards.
  class Build
    N = Arel::Nodes

    def initialize(mapping)
      @m = mapping
      @pg = mapping.postgres?
    end

    def node(f)
      case f.op
      when :eq, :ne, :lt, :le, :gt, :ge then compare(f)
      when :in then among(f)
      when :contains then contains(f)
      when :exists then present(*@m.column_of(f.attribute))
      when :and then f.operands.empty? ? N::True.new : N::Grouping.new(N::And.new(f.operands.map { |o| node(o) }))
      when :or then f.operands.empty? ? N::False.new : N::Grouping.new(f.operands.map { |o| node(o) }.reduce { |a, b| N::Or.new(a, b) })
      when :not then N::Not.new(N::NamedFunction.new("COALESCE", [node(f.operands.fetch(0)), N::False.new]))
      else raise Error, "unknown filter op #{f.op.inspect}"
      end
    end

    # The JSON type class of a literal: :string, :number or :bool (nil for anything else).
    def self.class_of(value)
      case value
      when String then :string
      when Numeric then :number
      when true, false then :bool
      end
    end

    def guards(declared)
      declared.filter_map do |attribute, a|
        column, klass = @m.column_of(attribute)
        checks = fits(column, a)
        if a.required
          # A list's checks hold only for an array: never for JSON null.
          N::Grouping.new(N::And.new([column.not_eq(nil), *checks]))
        elsif checks.any?
          # Absent: NULL, or a JSON null in a list column (present is never NULL: NOT is exact).
          absent = klass == :list ? N::Not.new(present(column, klass)) : column.eq(nil)
          N::Grouping.new(N::Or.new(absent, N::And.new(checks)))
        end
      end
    end

    # Where no schema declares them, the list attributes the filter compares (contains, ==, in):
    # each column must hold a list or nothing. A JSON scalar or object there (or text that is not
    # JSON) is a value Check's condition fails on with an error (`!("a" in tags)` on a string:
    # no rule fires), which the two-valued filter cannot say (its negation holds): such rows are
    # left out, fail closed. (`exists` alone needs no guard: has() holds on any value.)
    def lists_only(filter, declared)
      compared = lambda do |f|
        case f.op
        when :and, :or, :not then f.operands.flat_map(&compared)
        when :exists then []
        else [f.attribute]
        end
      end
      compared.(filter).uniq.filter_map do |attribute|
        next if declared.key?(attribute)

        column, klass = @m.column_of(attribute)
        list_or_absent(column) if klass == :list
      end
    end

    private

    # NULL, JSON null or a JSON array; never NULL itself.
    def list_or_absent(column)
      types = %w[array null].map { |t| quoted(t) }
      unless @pg
        return N::Case.new.when(json_valid(column)).then(N::In.new(json_type(column), types)).else(column.eq(nil))
      end

      N::Grouping.new(N::Or.new(column.eq(nil), N::In.new(N::NamedFunction.new("jsonb_typeof", [cast(column, "jsonb")]), types)))
    end

    def compare(f)
      column, klass = @m.column_of(f.attribute)
      if Build.class_of(f.value) != klass
        # Values of different types are unequal, and unordered.
        return f.op == :ne ? present(column, klass) : N::False.new
      end

      left = klass == :string && @pg && !%i[eq ne].include?(f.op) ? N::InfixOperation.new("COLLATE", column, Arel.sql('"C"')) : column
      right = bind(f.value)
      { eq: N::Equality, ne: N::NotEqual, lt: N::LessThan, le: N::LessThanOrEqual,
        gt: N::GreaterThan, ge: N::GreaterThanOrEqual }.fetch(f.op).new(left, right)
    end

    def among(f)
      column, klass = @m.column_of(f.attribute)
      values = f.values.select { |v| Build.class_of(v) == klass }
      values.empty? ? N::False.new : N::In.new(column, values.map { |v| bind(v) })
    end

    def contains(f)
      column, klass = @m.column_of(f.attribute)
      element = Build.class_of(f.value)
      return N::False.new unless klass == :list && element

      if @pg
        json = cast(column, "jsonb")
        N::And.new([
                     N::Equality.new(N::NamedFunction.new("jsonb_typeof", [json]), quoted("array")),
                     N::InfixOperation.new("@>", json, N::NamedFunction.new("jsonb_build_array", [bind(f.value)]))
                   ])
      else
        each = Arel::Table.new(:json_each)
        inner = Arel::SelectManager.new
        inner.from(N::NamedFunction.new("json_each", [column]))
        inner.project(N::SqlLiteral.new("1"))
        inner.where(N::In.new(each[:type], sqlite_types(element).map { |t| quoted(t) }))
        inner.where(each[:value].eq(bind(f.value)))
        only_if(json_valid(column), [N::Equality.new(json_type(column), quoted("array")), N::Exists.new(inner.ast)])
      end
    end

    # Present: not NULL (nor a JSON null, which the record reads as nil); never NULL itself. On
    # SQLite, text that is not JSON is present (a value, no list).
    def present(column, klass)
      return column.not_eq(nil) unless klass == :list
      unless @pg
        return N::Case.new.when(json_valid(column)).then(N::NotEqual.new(json_type(column), quoted("null")))
                      .else(column.not_eq(nil))
      end

      type = N::NamedFunction.new("jsonb_typeof", [cast(column, "jsonb")])
      N::Grouping.new(N::And.new([column.not_eq(nil), N::NotEqual.new(type, quoted("null"))]))
    end

    # What makes a non-NULL column hold a value Check accepts for the declared attribute, beyond
    # what its SQL type ensures.
    def fits(column, a)
      checks = []
      case a.type
      when :string, :enum
        checks << N::NotEqual.new(column, quoted("")) if a.non_empty
        checks << N::In.new(column, a.values.map { |v| quoted(v) }) if a.type == :enum
      when :int
        checks << N::Equality.new(column, N::NamedFunction.new(@pg ? "trunc" : "round", [column]))
        checks << N::LessThanOrEqual.new(N::NamedFunction.new("abs", [column]), N::SqlLiteral.new(Mapping::EXACT.to_s))
      when :list
        checks.concat(list_checks(column, a))
      end
      checks
    end

    def list_checks(column, a)
      element = { string: :string, enum: :string, int: :number, double: :number, bool: :bool }[a.items&.type]
      if @pg
        json = cast(column, "jsonb")
        checks = []
        # Not []: a comparison, not jsonb_array_length, which raises on a scalar.
        checks << N::NotEqual.new(json, cast(quoted("[]"), "jsonb")) if a.non_empty
        if element
          e = Arel::Table.new(:e)
          inner = Arel::SelectManager.new
          inner.from(N::TableAlias.new(N::NamedFunction.new("jsonb_array_elements", [json]), "e"))
          inner.project(N::SqlLiteral.new("1"))
          pg_type = { string: "string", number: "number", bool: "boolean" }.fetch(element)
          # jsonb_array_elements names its column `value` (`e.e` is no column).
          inner.where(N::NotEqual.new(N::NamedFunction.new("jsonb_typeof", [e[:value]]), quoted(pg_type)))
          # jsonb_array_elements raises on a scalar too.
          checks << N::Not.new(N::Exists.new(inner.ast))
        end
        [only_if(N::Equality.new(N::NamedFunction.new("jsonb_typeof", [json]), quoted("array")), checks)]
      else
        checks = [N::Equality.new(json_type(column), quoted("array"))]
        checks << N::GreaterThan.new(N::NamedFunction.new("json_array_length", [column]), N::SqlLiteral.new("0")) if a.non_empty
        if element
          each = Arel::Table.new(:json_each)
          inner = Arel::SelectManager.new
          inner.from(N::NamedFunction.new("json_each", [column]))
          inner.project(N::SqlLiteral.new("1"))
          inner.where(N::NotIn.new(each[:type], sqlite_types(element).map { |t| quoted(t) }))
          checks << N::Not.new(N::Exists.new(inner.ast))
        end
        [only_if(json_valid(column), checks)]
      end
    end

    # `test`, then the nodes, evaluated only where `test` holds (FALSE elsewhere):
    # CASE, because neither database promises to evaluate an AND's operands in order, and the
    # nodes hold functions that raise on what `test` rules out (SQLite's JSON functions on text
    # that is not JSON, PostgreSQL's jsonb_array_elements on a scalar).
    def only_if(test, nodes)
      return test if nodes.empty?

      N::Case.new.when(test).then(N::Grouping.new(N::And.new(nodes))).else(N::False.new)
    end

    def json_valid(column)
      N::NamedFunction.new("json_valid", [column])
    end

    def json_type(column)
      N::NamedFunction.new("json_type", [column])
    end

    def sqlite_types(element)
      { string: %w[text], number: %w[integer real], bool: %w[true false] }.fetch(element)
    end

    # A literal as a bound parameter. Numbers are doubles (CEL's numbers), cast on PostgreSQL so
    # that an integer column never casts the parameter (2.5 to 2).
    def bind(value)
      type = { string: ActiveModel::Type::String, number: ActiveModel::Type::Float,
               bool: ActiveModel::Type::Boolean }.fetch(Build.class_of(value)).new
      value = value.to_f if value.is_a?(Numeric)
      param = N::BindParam.new(ActiveRecord::Relation::QueryAttribute.new("verdict", value, type))
      return param unless @pg

      cast(param, { String => "text", Float => "double precision" }.fetch(value.class, "boolean"))
    end

    def cast(node, type)
      N::NamedFunction.new("CAST", [N::As.new(node, N::SqlLiteral.new(type))])
    end

    # A constant of this code (a type name, an enum value of the schema), quoted by the adapter.
    def quoted(text)
      N.build_quoted(text)
    end
  end

  # The class methods of every ActiveRecord model (`verdict_resource`, `verdict_scope`).
  module Model
    # Declares the kind this model's rows are and the column of each attribute policies read:
    #   verdict_resource "Note", columns: { "practice_id" => :practice_id, "signed" => :is_signed }
    # `schema:` (a Verdict::Schema, default Verdict.schema) makes the mapping typed; see Mapping.
    def verdict_resource(kind, columns:, schema: Verdict.schema)
      @verdict_mapping = Mapping.new(self, kind, columns, schema)
      include InstanceMethods
    end

    def verdict_mapping
      @verdict_mapping or raise MappingError, "#{name} declares no verdict_resource"
    end

    # The rows `action` is allowed on, as a relation: PlanFilter for the kind, turned into a WHERE
    # of Arel nodes with bound parameters. `none` for ALWAYS_DENIED; raises Verdict::Error
    # subclasses on errors (PlanUnsupported, MappingError, TokenRejected, CallError).
    def verdict_scope(client, action:, principal: nil, token: nil, context: nil, known_attr: nil)
      mapping = verdict_mapping.validate!
      plan = client.plan_filter(mapping.kind, action, principal: principal, token: token, context: context,
                                                      known_attr: known_attr)
      mapping.relation(plan)
    end

    module InstanceMethods
      # This record as the resource Check decides on.
      def to_verdict_resource
        self.class.verdict_mapping.resource(self)
      end
    end
  end
end

ActiveSupport.on_load(:active_record) { extend Verdict::Model }
