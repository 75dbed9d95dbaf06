# frozen_string_literal: true

# Verdict::Mapping's errors and unconditional plans, on SQLite: a mapping that cannot be exact
# raises (at first use, or when a plan compares an attribute without a column), never a silently
# dropped clause; and list columns holding text that is not JSON, JSON null, scalars and objects
# (written by raw SQL), which never fail a query. The plans are the daemon's when VERDICT_SERVER names one running the policies of
# tests/scenarios/overgrant; the schema is `verdict schema export policies` in VERDICT_SCHEMA_JSON.
#
#   VERDICT_SERVER=127.0.0.1:50051 VERDICT_SCHEMA_JSON=schema.json ruby clients/ruby/test/mapping_test.rb
require "minitest/autorun"
require_relative "../lib/verdict/active_record"

ActiveRecord::Base.establish_connection(adapter: "sqlite3", database: ":memory:")
ActiveRecord::Schema.verbose = false
ActiveRecord::Schema.define do
  create_table :charts, id: :string do |t|
    t.string :owner
    t.boolean :restricted
    t.json :tags
  end
  create_table :notes, id: :string do |t|
    t.string :practice_id
    t.string :patient_id
    t.boolean :signed
    t.integer :author_id
  end
end

class Chart < ActiveRecord::Base; end
class Note < ActiveRecord::Base; end

class MappingTest < Minitest::Test
  CLINIC = Verdict::Schema.load(ENV.fetch("VERDICT_SCHEMA_JSON"))

  def setup
    Chart.delete_all
    Chart.create!(id: "c1", owner: "u1", tags: ["g1"])
    Chart.create!(id: "c2", owner: "u2", restricted: true)
  end

  def model(table, kind, columns, schema: nil)
    Class.new(ActiveRecord::Base) do
      self.table_name = table
      def self.name = "Mapped#{table_name}"
      verdict_resource kind, columns: columns, schema: schema
    end
  end

  def plan(kind, filter = nil, token_error: "")
    Verdict::PlanResult.new(kind: kind, filter: filter, token_error: token_error, schema_violation: "")
  end

  def test_unconditional_plans_are_all_and_none
    charts = model("charts", "Chart", { "owner" => :owner })
    assert_equal %w[c1 c2], charts.verdict_mapping.relation(plan(:always_allowed)).order(:id).pluck(:id)
    denied = charts.verdict_mapping.relation(plan(:always_denied))
    assert_equal [], denied.pluck(:id)
    assert_equal charts.none.to_sql, denied.to_sql
  end

  def test_a_rejected_token_raises
    charts = model("charts", "Chart", { "owner" => :owner })
    error = assert_raises(Verdict::TokenRejected) { charts.verdict_mapping.relation(plan(:always_denied, token_error: "expired")) }
    assert_equal "expired", error.token_error
  end

  def test_an_attribute_without_a_column_raises_when_the_plan_uses_it
    charts = model("charts", "Chart", { "owner" => :owner })
    filter = Verdict::Filter.new(op: :or, values: [], operands: [
                                   Verdict::Filter.new(op: :eq, attribute: "owner", value: "u1", values: [], operands: []),
                                   Verdict::Filter.new(op: :exists, attribute: "restricted", values: [], operands: [])
                                 ])
    error = assert_raises(Verdict::MappingError) { charts.verdict_mapping.relation(plan(:conditional, filter)) }
    assert_includes error.message, 'attribute "restricted", which has no column'
  end

  def test_an_attribute_without_a_column_raises_on_the_daemons_plan
    skip "VERDICT_SERVER not set" unless ENV["VERDICT_SERVER"]
    client = Verdict::Client.new(ENV.fetch("VERDICT_SERVER"))
    charts = model("charts", "Chart", { "owner" => :owner, "tags" => :tags })
    # read: !has(restricted) || (has(restricted) && owner == P.id) || ward...: restricted is unmapped.
    error = assert_raises(Verdict::MappingError) { charts.verdict_scope(client, principal: { id: "u1" }, action: "read") }
    assert_match(/attribute "(restricted|ward|level)", which has no column/, error.message)
    # A macro over a resource attribute: PlanFilter refuses, and so does the scope.
    error = assert_raises(Verdict::PlanUnsupported) { charts.verdict_scope(client, principal: { id: "u1" }, action: "audit") }
    assert_includes error.message, "cannot be turned into a filter"
  end

  def test_a_column_the_table_lacks_raises
    charts = model("charts", "Chart", { "owner" => :owner_id })
    error = assert_raises(Verdict::MappingError) { charts.verdict_mapping.validate! }
    assert_includes error.message, 'column "owner_id", which charts lacks'
  end

  def test_the_schema_is_held_to
    columns = { "practice_id" => :practice_id, "patient_id" => :patient_id, "signed" => :signed }
    assert model("notes", "Note", columns, schema: CLINIC).verdict_mapping.validate!
    [
      [{ **columns, "secret" => :author_id }, 'attribute "secret" is not declared for kind Note'],
      [columns.except("signed"), "the schema requires signed of every Note"],
      [{ **columns, "author_id" => :author_id }, "attribute author_id is string in the schema, column author_id is integer"]
    ].each do |mapping, message|
      error = assert_raises(Verdict::MappingError) { model("notes", "Note", mapping, schema: CLINIC).verdict_mapping.validate! }
      assert_includes error.message, message
    end
    error = assert_raises(Verdict::MappingError) { model("notes", "Nope", columns, schema: CLINIC).verdict_mapping.validate! }
    assert_includes error.message, 'kind "Nope" is not declared in the schema'
  end

  # A list column holding text that is not JSON (raw SQL, another program), JSON null, a JSON
  # scalar or object: no query fails. The text is a present value that is no list (fits no list
  # type) and to_verdict_resource sends it; JSON null is absent, as the record reads it. Without a
  # schema, a plan comparing the column leaves out the rows where it holds no list: Check's
  # condition fails on them (`!("g1" in tags)` on a string), which the filter's NOT cannot say.
  def test_list_columns_holding_text_that_is_not_json_never_fail_the_query
    raw = { "c3" => "nope", "c4" => "null", "c5" => '"g1"', "c6" => '["g1"', "c7" => "", "c8" => '{"g1":1}' }
    raw.each { |id, text| Chart.connection.execute("INSERT INTO charts (id, tags) VALUES (#{Chart.connection.quote(id)}, #{Chart.connection.quote(text)})") }
    leaf = ->(op, value = nil) { Verdict::Filter.new(op: op, attribute: "tags", value: value, values: [], operands: []) }
    negated = ->(f) { Verdict::Filter.new(op: :not, values: [], operands: [f]) }
    ids = ->(model, p) { model.verdict_mapping.relation(p).order(:id).pluck(:id) }

    charts = model("charts", "Chart", { "owner" => :owner, "tags" => :tags })
    assert_equal %w[c1 c3 c5 c6 c7 c8], ids.(charts, plan(:conditional, leaf.(:exists)))
    assert_equal %w[c2 c4], ids.(charts, plan(:conditional, negated.(leaf.(:exists))))
    assert_equal %w[c1], ids.(charts, plan(:conditional, leaf.(:contains, "g1")))
    assert_equal %w[c2 c4], ids.(charts, plan(:conditional, negated.(leaf.(:contains, "g1"))))
    assert_equal %w[c1], ids.(charts, plan(:conditional, Verdict::Filter.new(op: :ne, attribute: "tags", value: "x", values: [], operands: [])))
    resources = Chart.order(:id).to_h { |r| [r.id, charts.verdict_mapping.resource(r)[:attr]] }
    assert_equal({ "owner" => "u1", "tags" => ["g1"] }, resources["c1"])
    assert_equal({ "tags" => "nope" }, resources["c3"])
    assert_equal({}, resources["c4"])
    assert_equal({ "tags" => "g1" }, resources["c5"])
    assert_equal({ "tags" => '["g1"' }, resources["c6"])
    assert_equal({ "tags" => "" }, resources["c7"])
    assert_equal({ "tags" => { "g1" => 1 } }, resources["c8"])

    # With a schema: only lists (of strings, not empty) fit; NULL and JSON null where optional.
    lists = lambda do |required|
      Verdict::Schema.new({ "$defs" => { "kinds" => { "Chart" => { "properties" => { "attr" => {
                            "required" => required ? ["tags"] : [],
                            "properties" => { "tags" => { "type" => "array", "items" => { "type" => "string" }, "minItems" => 1 } }
                          } } } } } })
    end
    optional = model("charts", "Chart", { "tags" => :tags }, schema: lists.(false))
    assert_equal %w[c1 c2 c4], ids.(optional, plan(:always_allowed))
    assert_equal %w[c1], ids.(optional, plan(:conditional, leaf.(:exists)))
    assert_equal %w[c2 c4], ids.(optional, plan(:conditional, negated.(leaf.(:contains, "g1"))))
    required = model("charts", "Chart", { "tags" => :tags }, schema: lists.(true))
    assert_equal %w[c1], ids.(required, plan(:always_allowed))
  end

  def test_literals_are_bound_and_types_never_cast
    charts = model("charts", "Chart", { "owner" => :owner, "tags" => :tags })
    sneaky = "u1' OR '1'='1"
    eq = ->(value) { Verdict::Filter.new(op: :eq, attribute: "owner", value: value, values: [], operands: []) }
    relation = charts.verdict_mapping.relation(plan(:conditional, eq.(sneaky)))
    assert_equal [], relation.pluck(:id)
    Chart.create!(id: "c3", owner: "7")
    # 7 is not "7" for Check: no cast makes it so.
    assert_equal [], charts.verdict_mapping.relation(plan(:conditional, eq.(7))).pluck(:id)
    assert_equal ["c3"], charts.verdict_mapping.relation(plan(:conditional, eq.("7"))).pluck(:id)
    ne = Verdict::Filter.new(op: :ne, attribute: "owner", value: 7, values: [], operands: [])
    assert_equal %w[c1 c2 c3], charts.verdict_mapping.relation(plan(:conditional, ne)).order(:id).pluck(:id)
  end
end
