# frozen_string_literal: true

# A Rails-style app without Rails: ActiveRecord models over SQLite and a notes controller that
# authorizes every action with Verdict::Controller, against a daemon running the bundled clinic
# policies. Prints each request and its answer.
#
#   verdict schema export policies > schema.json     # optional: types checked, rows held to them
#   ruby clients/ruby/examples/clinic_app.rb 127.0.0.1:50051 [schema.json]
require "json"
require_relative "../lib/verdict/active_record"
require_relative "../lib/verdict/controller"

ActiveRecord::Base.establish_connection(adapter: "sqlite3", database: ":memory:")
ActiveRecord::Schema.verbose = false
ActiveRecord::Schema.define do
  create_table :notes, id: :string do |t|
    t.string :practice_id, null: false
    t.string :patient_id, null: false
    t.string :author_id
    t.boolean :signed, null: false, default: false
    t.text :body
  end
end
Verdict.schema = Verdict::Schema.load(ARGV[1]) if ARGV[1]

class Note < ActiveRecord::Base
  verdict_resource "Note", columns: { "practice_id" => :practice_id, "patient_id" => :patient_id,
                                      "author_id" => :author_id, "signed" => :signed }
end

# What ActionController gives a Pundit app, in a few lines: after-action callbacks, params,
# render, and errors turned into statuses.
class ApplicationController
  CLIENT = Verdict::Client.new(ARGV.fetch(0, "127.0.0.1:50051"), timeout: 2.0, retries: 2)

  def self.after_action(name) = (@after_actions ||= []) << name
  def self.after_actions = (superclass.respond_to?(:after_actions) ? superclass.after_actions : []) + (@after_actions || [])

  include Verdict::Controller

  attr_reader :params, :action_name, :current_user

  def initialize(action_name, params, current_user)
    @action_name = action_name
    @params = params
    @current_user = current_user
  end

  def self.dispatch(action, params, user)
    controller = new(action, params, user)
    controller.public_send(action)
    after_actions.each { |callback| controller.send(callback) }
    [200, controller.body]
  rescue Verdict::NotAuthorized => e
    [403, e.decision.reason]
  rescue Verdict::TokenRejected => e
    [401, e.message]
  rescue ActiveRecord::RecordNotFound
    [404, "not found"]
  rescue Verdict::AuthorizationNotPerformed => e
    [500, e.message]
  end

  attr_reader :body

  def render(json:)
    @body = json
  end

  def verdict_client = CLIENT
  def verdict_principal = current_user
end

class NotesController < ApplicationController
  # GET /notes
  def index
    render json: verdict_scope(Note, :search).order(:id).pluck(:id)
  end

  # GET /notes/:id
  def show
    render json: authorize!(Note.find(params[:id]), :read).body
  end

  # POST /notes/:id/sign
  def sign
    note = authorize!(Note.find(params[:id]), :sign)
    note.update!(signed: true)
    render json: "signed"
  end

  # GET /notes/export: forgets to ask Verdict, and the after-action check says so.
  def export
    render json: Note.pluck(:id)
  end
end

Note.create!(id: "n1", practice_id: "7", patient_id: "123", author_id: "dr-house", signed: true, body: "BP 120/80")
Note.create!(id: "n2", practice_id: "7", patient_id: "123", author_id: "dr-house", body: "follow-up in 2 weeks")
Note.create!(id: "n3", practice_id: "7", patient_id: "124", author_id: "dr-wilson", signed: true, body: "referral")
Note.create!(id: "n4", practice_id: "9", patient_id: "456", author_id: "dr-cuddy", signed: true, body: "elsewhere")

users = {
  "dr-house" => { id: "dr-house", roles: ["physician"], scopes: ["user/*.cruds"], attr: { practice_id: "7" } },
  "alice" => { id: "alice", roles: ["patient"], scopes: ["patient/*.rs"], attr: { patient_id: "123", patient: "123" } }
}
[
  ["GET /notes", :index, {}, "dr-house"],
  ["GET /notes", :index, {}, "alice"],
  ["GET /notes/n1", :show, { id: "n1" }, "alice"],
  ["GET /notes/n4", :show, { id: "n4" }, "dr-house"],
  ["POST /notes/n2/sign", :sign, { id: "n2" }, "dr-house"],
  ["GET /notes", :index, {}, "alice"],
  ["POST /notes/n3/sign", :sign, { id: "n3" }, "dr-house"],
  ["GET /notes/export", :export, {}, "dr-house"]
].each do |request, action, params, user|
  status, body = NotesController.dispatch(action, params, users.fetch(user))
  puts "#{request} as #{user}: #{status} #{body.to_json}"
end
