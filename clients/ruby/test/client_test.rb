# frozen_string_literal: true

# Runs scenarios through Verdict::Client against a running daemon and checks every answer.
#
#   ruby clients/ruby/test/client_test.rb --server 127.0.0.1:50051 --scenarios scenarios.json
#
# The scenarios file is JSON: {"checks": [...], "plans": [...]}, as tests/ruby_client.rs writes it
# from the bundled clinic suite (policies/clinic/clinic_test.yaml). Each check has a `principal`,
# a `resource`, an optional `context`, `expect` (action -> "allow" | "deny") and optionally `rules`
# (action -> "policy/rule") and `reasons` (action -> a substring of the reason). Each plan has a
# `principal`, `kind`, `action`, optional `context` and `known_attr`, `expect` and, when
# conditional, `filter` (the one-line form). Prints one line per scenario and a summary; exits 1 if
# any scenario failed.
require "json"
require "optparse"
require_relative "../lib/verdict"

options = {}
OptionParser.new do |o|
  o.on("--server ADDR") { |v| options[:server] = v }
  o.on("--scenarios FILE") { |v| options[:scenarios] = v }
end.parse!
scenarios = JSON.parse(File.read(options.fetch(:scenarios)))
verdict = Verdict::Client.new(options.fetch(:server), timeout: 10)

def run_check(verdict, c)
  actions = c["expect"].keys
  result = verdict.check(principal: c["principal"], context: c["context"], request_id: c["name"],
                         resources: [c["resource"].merge("actions" => actions)])
  return ["#{result.results.size} results for one resource"] unless result.results.size == 1

  problems = []
  r = result.results[0]
  problems << "answered for #{r.kind}/#{r.id}" unless [r.kind, r.id] == [c["resource"]["kind"], c["resource"]["id"].to_s]
  problems << "request id #{result.request_id}" unless result.request_id == c["name"]
  actions.each do |action|
    d = r.actions[action] or (problems << "#{action}: no decision"; next)
    expected = c["expect"][action].to_sym
    problems << "#{action}: #{d.effect}, expected #{expected} (#{d.reason})" unless d.effect == expected
    problems << "#{action}: allow? is #{d.allow?}" unless d.allow? == (expected == :allow)
    rule = (c["rules"] || {})[action]
    problems << "#{action}: decided by #{d.policy}/#{d.rule}, expected #{rule}" if rule && "#{d.policy}/#{d.rule}" != rule
    reason = (c["reasons"] || {})[action]
    problems << "#{action}: reason #{d.reason.inspect} lacks #{reason.inspect}" if reason && !d.reason.include?(reason)
    problems << "#{action}: empty reason" if d.reason.empty?
  end
  problems
end

def run_plan(verdict, c)
  result = verdict.plan_filter(c["kind"], c["action"], principal: c["principal"], context: c["context"],
                                                       known_attr: c["known_attr"])
  problems = []
  problems << "#{result.kind}, expected #{c['expect']}" unless result.kind == c["expect"].to_sym
  problems << "policy version empty" if result.policy_version.empty?
  if result.conditional?
    got = result.filter.to_s
    problems << "filter #{got}, expected #{c['filter']}" if c["filter"] && got != c["filter"]
  elsif result.filter
    problems << "a filter on an unconditional plan"
  end
  problems
end

passed = failed = 0
[["checks", :run_check], ["plans", :run_plan]].each do |kind, run|
  scenarios.fetch(kind, []).each do |c|
    problems = send(run, verdict, c)
    if problems.empty?
      passed += 1
      puts "ok   #{kind[0..-2]} #{c['name']}"
    else
      failed += 1
      puts "FAIL #{kind[0..-2]} #{c['name']}: #{problems.join('; ')}"
    end
  end
end
puts "scenarios: #{passed} ok, #{failed} failed"
exit(failed.zero? && passed.positive? ? 0 : 1)
