# frozen_string_literal: true

# The proof that Model.verdict_scope selects exactly the rows Check allows: random rows (NULL
# columns included, and values the schema refuses) written through ActiveRecord into a real
# database; random principals; for every (principal, kind, action) the ids the scope's relation
# returns must equal the ids Check allows when each record is sent as it reads
# (to_verdict_resource; a NULL column sent as absent or, at random, as an explicit null), both
# answered by the running daemon.
#
#   ruby clients/ruby/test/scope_property_test.rb --server ADDR --set clinic|docs|charts|wards
#        --database sqlite|postgres [--postgres 'host=... dbname=...'] [--schema schema.json]
#        [--seed N] [--principals N] [--rows N]
#
# tests/ruby_client.rs runs it against the bundled clinic policies (with their schema, from
# `verdict schema export`), tests/scenarios/plan (every filter operator) and
# tests/scenarios/overgrant (has(), == null, all() over lists, a macro no filter expresses) and
# tests/scenarios/wards (typed: non_empty strings and lists holding "" and [], scalars in lists).
# Json list columns also get texts written by raw SQL as another program might: JSON null,
# scalars, objects and (SQLite) text that is not JSON, which must never fail the query. Without a
# schema, rows holding no list in a json column the plan compares (contains, ==, in) may be missing
# from the scope (the adapter leaves them out: Check's condition fails on them with an error),
# never extra.
# Prints a summary; exits 1 on any disagreement, naming the principal, plan, SQL and rows.
require "json"
require "optparse"
require_relative "../lib/verdict/active_record"

options = { seed: 20_261_129, principals: 30, rows: 80, database: "sqlite" }
OptionParser.new do |o|
  o.on("--server ADDR") { |v| options[:server] = v }
  o.on("--set NAME") { |v| options[:set] = v }
  o.on("--database NAME") { |v| options[:database] = v }
  o.on("--postgres CONNINFO") { |v| options[:postgres] = v }
  o.on("--schema FILE") { |v| options[:schema] = v }
  o.on("--seed N", Integer) { |v| options[:seed] = v }
  o.on("--principals N", Integer) { |v| options[:principals] = v }
  o.on("--rows N", Integer) { |v| options[:rows] = v }
end.parse!

# A kind's table: attribute => [column type, values]; `wrong`: values of the column's type that
# the schema refuses ("" for a non-empty id, an enum value it does not list); `raw`: texts written
# into a json column by raw SQL, not through ActiveRecord (PostgreSQL's jsonb refuses those that
# are not JSON: only the others are written there).
Kind = Struct.new(:name, :attributes, :wrong, :raw, keyword_init: true)

def s(*values) = values

practice = s("7", "9")
patient = s("123", "124", "456")
KINDS = {
  "clinic" => [
    Kind.new(name: "Patient", attributes: {
               "practice_id" => [:string, practice], "patient_id" => [:string, patient],
               "state" => [:string, s("CA", "NY", "TX")], "celebrity" => [:boolean, [true, false, false]],
               "primary_physician_id" => [:string, s("dr-wilson", "dr-house")]
             }, wrong: { "practice_id" => [""], "primary_physician_id" => [""] }),
    Kind.new(name: "Note", attributes: {
               "practice_id" => [:string, practice], "patient_id" => [:string, patient],
               "author_id" => [:string, s("dr-wilson", "dr-house")], "signed" => [:boolean, [true, false]]
             }, wrong: { "patient_id" => [""] }),
    Kind.new(name: "Observation", attributes: {
               "practice_id" => [:string, practice], "patient_id" => [:string, patient],
               "category" => [:string, s("laboratory", "vital-signs")]
             }, wrong: { "category" => s("lab", "Laboratory") }),
    Kind.new(name: "MedicationRequest", attributes: {
               "practice_id" => [:string, practice], "patient_id" => [:string, patient],
               "patient_state" => [:string, s("CA", "NY", "TX")]
             }, wrong: { "patient_state" => [""] }),
    Kind.new(name: "Invoice", attributes: {
               "practice_id" => [:string, practice], "patient_id" => [:string, patient],
               "amount" => [:float, [50.0, 100.0, 250.5]]
             }, wrong: {})
  ],
  "docs" => [
    Kind.new(name: "Doc", attributes: {
               "owner" => [:string, s("u1", "u2", "u3")], "level" => [:float, [1.0, 2.0, 3.0, 4.5]],
               "tags" => [:json, [[], ["x"], ["secret"], %w[x archived], %w[g1 secret], ["g2"]]],
               "public" => [:boolean, [true, false]], "region" => [:string, s("east", "north", "south", "west", "Ärz")],
               "score" => [:float, [5.0, 10.0, 50.5, 60.0, 90.0, 99.9]]
             }, wrong: {}, raw: { "tags" => ["nope", "null", '"x"', '{"secret":1}', "[x", ""] })
  ],
  "charts" => [
    Kind.new(name: "Chart", attributes: {
               "owner" => [:string, s("u1", "u2", "")], "restricted" => [:boolean, [true, false]],
               "sealed" => [:string, s("yes", "no")],
               "tags" => [:json, [[], ["g1"], %w[g1 g2], ["secret"], %w[g2 secret], [1, "g1"]]],
               "level" => [:integer, [0, 1, 3, 4]], "ward" => [:string, s("a", "b", "c")]
             }, wrong: {}, raw: { "tags" => ["nope", "null", '"g1"', '["g1"', "5"] })
  ],
  # "" and [] (values of the column's type) are refused where the schema says non_empty; a JSON
  # scalar or object in a list column, for its type.
  "wards" => [
    Kind.new(name: "Ward", attributes: {
               "name" => [:string, s("w", "v", "")], "nurses" => [:json, [["u1"], %w[u2 dr-house], []]],
               "note" => [:string, s("a", "u1", "")], "tags" => [:json, [["x"], %w[x y], []]],
               "open" => [:boolean, [true, false]]
             }, wrong: { "tags" => ["s", { "k" => 1 }], "nurses" => ["u1"] },
             raw: { "tags" => ["nope", "null", '["x"', "", "5"], "nurses" => ["u1", "null", "[u1]", '{"a":'] })
  ]
}.freeze

ACTIONS = {
  "wards" => %w[read update delete share],
  "clinic" => %w[read search create update delete sign],
  "docs" => %w[read search create update delete sign],
  "charts" => %w[read update share search audit]
}.freeze

def random_principal(rng)
  pick = ->(items, max, min = 0) { Array.new(rng.rand(min..max)) { items.sample(random: rng) } }
  maybe = lambda do |attr, name, values|
    attr[name] = values.sample(random: rng) if rng.rand(5).positive?
  end
  attr = {}
  maybe.(attr, "practice_id", s("7", "9"))
  maybe.(attr, "patient_id", s("123", "124"))
  maybe.(attr, "patient", s("123", "456"))
  maybe.(attr, "licensed_states", [["CA"], %w[CA TX], []])
  maybe.(attr, "clearance", [1, 3.0, 5])
  maybe.(attr, "regions", [["east"], %w[north south], []])
  maybe.(attr, "groups", [["g1"], %w[g1 g2], ["x"], []])
  scopes = pick.(["user/*.cruds", "user/Observation.read", "patient/Observation.rs", "patient/*.read",
                  "system/*.read", "patient/Observation.rs?category=laboratory", "user/*.write", "openid"], 2)
  scopes << "user/*.cruds" if rng.rand(2).zero?
  {
    id: %w[dr-wilson dr-house u1 u2].sample(random: rng),
    roles: pick.(%w[physician nurse admin_staff patient system janitor admin], 2),
    capabilities: pick.(%w[view-patient sign-a-note], 1),
    scopes: scopes,
    attr: attr
  }
end

def connect(options)
  if options[:database] == "postgres"
    info = options.fetch(:postgres).split.to_h { |pair| pair.split("=", 2) }
    ActiveRecord::Base.establish_connection(adapter: "postgresql", host: info["host"], port: info["port"],
                                            username: info["user"], database: info["dbname"])
    schema = "verdict_ruby_#{options[:set]}_#{Process.pid}"
    ActiveRecord::Base.connection.execute("DROP SCHEMA IF EXISTS #{schema} CASCADE; CREATE SCHEMA #{schema}")
    ActiveRecord::Base.connection.schema_search_path = schema
    at_exit { ActiveRecord::Base.connection.execute("DROP SCHEMA IF EXISTS #{schema} CASCADE") }
  else
    ActiveRecord::Base.establish_connection(adapter: "sqlite3", database: ":memory:")
  end
  ActiveRecord::Schema.verbose = false
end

def create_model(kind, schema, postgres)
  table = "#{kind.name.downcase}s"
  ActiveRecord::Schema.define do
    create_table table, id: :string do |t|
      kind.attributes.each do |name, (type, _)|
        t.column name, type == :json && postgres ? :jsonb : type
      end
    end
  end
  model = Class.new(ActiveRecord::Base) { self.table_name = table }
  Object.const_set("#{kind.name}Record", model)
  model.verdict_resource(kind.name, columns: kind.attributes.keys.to_h { |a| [a, a.to_sym] }, schema: schema)
  model
end

def json?(text)
  JSON.parse(text)
  true
rescue JSON::ParserError
  false
end

# Writes the rows; answers how many columns got raw text.
def random_rows(rng, kind, model, count, postgres)
  raw_texts = (kind.raw || {}).transform_values { |texts| postgres ? texts.select { |t| json?(t) } : texts }
  written = 0
  count.times do |i|
    row = { id: "#{kind.name}-#{i}" }
    raw = {}
    kind.attributes.each do |name, (_, values)|
      wrong = kind.wrong[name]
      case rng.rand(20)
      when 0..3 then row[name] = nil
      when 4 then row[name] = (wrong || values).sample(random: rng)
      when 5..7
        if raw_texts[name] then raw[name] = raw_texts[name].sample(random: rng)
        else row[name] = values.sample(random: rng)
        end
      else row[name] = values.sample(random: rng)
      end
    end
    model.create!(row)
    next if raw.empty?

    c = model.connection
    model.where(id: row[:id]).update_all(raw.map { |name, text| "#{c.quote_column_name(name)} = #{c.quote(text)}" }.join(", "))
    written += raw.size
  end
  written
end

connect(options)
stats = Hash.new(0)
postgres = options[:database] == "postgres"
schema = options[:schema] && Verdict::Schema.load(options[:schema])
rng = Random.new(options[:seed])
client = Verdict::Client.new(options.fetch(:server), timeout: 30)
kinds = KINDS.fetch(options.fetch(:set))
models = kinds.to_h do |kind|
  model = create_model(kind, schema, postgres)
  stats[:raw] += random_rows(rng, kind, model, options[:rows], postgres)
  [kind, model]
end
principals = Array.new(options[:principals]) { random_principal(rng) }

# Every scope query's SQL and bound values, to prove literals are bound, never pasted.
queries = []
ActiveSupport::Notifications.subscribe("sql.active_record") do |*, payload|
  queries << [payload[:sql], payload[:binds].size] if payload[:sql].include?("verdict_probe")
end

failures = []
principals.each do |principal|
  models.each do |kind, model|
    records = model.order(:id).to_a
    actions = ACTIONS.fetch(options[:set])
    # What Check allows, each record as it reads (a NULL column sent absent or as null; a json
    # column's text that is not JSON sent as that text), every action at once.
    resources = records.map do |r|
      resource = r.to_verdict_resource
      kind.attributes.each_key { |a| resource[:attr][a] = nil if !resource[:attr].key?(a) && rng.rand(2).zero? }
      resource.merge(actions: actions)
    end
    # Each row's json attributes that hold no list (a scalar, an object, text that is not JSON).
    lists = kind.attributes.select { |_, (type, _)| type == :json }.keys
    not_lists = records.zip(resources).to_h do |r, res|
      [r.id, lists.reject { |a| res[:attr][a].nil? || res[:attr][a].is_a?(Array) }]
    end
    decisions = resources.each_slice(500).flat_map do |batch|
      client.check(principal: principal, resources: batch).results.map(&:actions)
    end
    actions.each do |action|
      stats[:plans] += 1
      begin
        plan = client.plan_filter(kind.name, action, principal: principal)
      rescue Verdict::PlanUnsupported => e
        # No filter expresses the policy: the scope must raise too, never fall back to a wider one.
        begin
          model.verdict_scope(client, principal: principal, action: action)
          raise "PlanFilter failed (#{e.message}) but the scope did not"
        rescue Verdict::PlanUnsupported
          stats[:unsupported] += 1
          next
        end
      end
      stats[plan.kind] += 1
      queries.clear
      scoped = model.verdict_mapping.relation(plan).annotate("verdict_probe").pluck(:id).sort
      if queries.empty?
        # `none` runs no query.
        raise "no query for a #{plan.kind} plan" unless plan.always_denied? && scoped.empty?

        sql = "(none)"
      else
        sql, binds = queries.fetch(0)
        placeholders = postgres ? sql.scan(/\$\d+/).uniq.size : sql.count("?")
        raise "#{placeholders} placeholders for #{binds} binds: #{sql}" unless placeholders == binds
        if plan.conditional? && plan.filter.to_s =~ /"|\d/ && binds.zero?
          raise "a conditional plan with literals and no bound parameter: #{sql}"
        end
      end

      mine = decisions.map { |d| d.fetch(action) }
      allowed = records.zip(mine).select { |_, d| d.allow? }.map { |r, _| r.id }.sort
      stats[:refused] += mine.count { |d| d.deny? && d.policy.empty? && d.reason.match?(/R\.attr\.\S+ (must|is required|is not declared)/) }
      stats[:allowed] += allowed.size
      extra = scoped - allowed
      missing = allowed - scoped
      unless schema
        # Without a schema, a plan comparing a json column leaves out the rows where it holds no
        # list, even those Check allows (an error its `||` absorbed): fail closed, never the
        # other way (`extra`).
        compared = lambda do |f|
          next f.operands.flat_map(&compared) if %i[and or not].include?(f.op)

          f.op == :exists ? [] : [f.attribute]
        end
        read = plan.conditional? ? compared.(plan.filter) : []
        excused = missing.select { |id| not_lists.fetch(id).intersect?(read) }
        stats[:left_out] += excused.size
        missing -= excused
      end
      next if extra.empty? && missing.empty?

      show = ->(ids) { ids.first(3).map { |id| [id, records.find { |r| r.id == id }.to_verdict_resource[:attr]] } }
      failures << "#{kind.name} #{action} for #{principal.to_json}: plan #{plan.kind} #{plan.filter}\n" \
                  "  SQL #{sql}\n  selected but denied: #{show.(extra)}\n  allowed but not selected: #{show.(missing)}"
    end
  end
end

puts failures.first(5).join("\n") unless failures.empty?
summary = "#{options[:set]} on #{options[:database]}: #{stats[:plans]} plans (#{stats[:conditional]} conditional, " \
          "#{stats[:always_allowed]} always allowed, #{stats[:always_denied]} always denied, " \
          "#{stats[:unsupported]} unsupported) over #{options[:rows]} rows per kind; #{stats[:allowed]} allowed and " \
          "#{stats[:refused]} refused for their types (principal, row) pairs; #{stats[:raw]} raw json texts, " \
          "#{stats[:left_out]} allowed rows left out for a json column holding no list; seed #{options[:seed]}; " \
          "#{failures.size} disagreements"
puts summary
problems = []
problems << "too few conditional plans" unless stats[:conditional] > stats[:plans] / 20
problems << "nothing allowed" unless stats[:allowed].positive?
problems << "no row refused for its types: the schema's guards are untested" if schema && stats[:refused].zero?
problems << "no raw json text written" if kinds.any?(&:raw) && stats[:raw].zero?
problems << "no plan was unsupported: the raising path is untested" if options[:set] == "charts" && stats[:unsupported].zero?
puts "vacuous: #{problems.join(', ')}" unless problems.empty?
exit(failures.empty? && problems.empty? ? 0 : 1)
