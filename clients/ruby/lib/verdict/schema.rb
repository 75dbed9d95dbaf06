# frozen_string_literal: true

require "json"

module Verdict
  # The policy set's schema, read from `verdict schema export` (JSON Schema, draft 2020-12, one
  # definition per kind under $defs/kinds): per kind, each resource attribute's type, whether it
  # is required, and its constraints. Verdict holds every Check to it before any rule runs, so a
  # model's scope must too: see Verdict::Mapping.
  class Schema
    # One declared attribute. `type`: :string, :enum, :int, :double, :bool, :list or :object;
    # `values`: an enum's strings; `items`: a list's element Attribute; `non_empty`: a string or
    # list that is never empty; `nullable`: declared optional (`string?`, `required: false`).
    Attribute = Struct.new(:path, :type, :required, :nullable, :non_empty, :values, :items, keyword_init: true)

    # A kind's attributes by dotted path (nested objects flattened; only top-level ones can be
    # required of every row).
    Kind = Struct.new(:name, :attributes, keyword_init: true)

    def self.load(path)
      parse(File.read(path))
    end

    def self.parse(text)
      new(JSON.parse(text))
    end

    def initialize(document)
      kinds = document.dig("$defs", "kinds")
      raise Error, "not a `verdict schema export` document: no $defs/kinds" unless kinds.is_a?(Hash)

      @kinds = kinds.to_h do |name, definition|
        attr = definition.dig("properties", "attr") || { "properties" => {} }
        [name, Kind.new(name: name, attributes: flatten(attr, "", true))]
      end
    end

    def kind_names
      @kinds.keys
    end

    # The kind's definition; raises for a kind the schema does not declare.
    def kind(name)
      @kinds.fetch(name) do
        raise MappingError, "kind #{name.inspect} is not declared in the schema (declared: #{@kinds.keys.join(', ')})"
      end
    end

    private

    def flatten(object, prefix, top)
      required = object.fetch("required", [])
      object.fetch("properties", {}).each_with_object({}) do |(name, spec), out|
        path = "#{prefix}#{name}"
        attribute = attribute(path, spec, required.include?(name) && top)
        if attribute.type == :object
          out.merge!(flatten(unwrap(spec).first, "#{path}.", false))
        else
          out[path] = attribute
        end
      end
    end

    # The non-null branch of `anyOf: [T, {type: null}]`, and whether null was allowed.
    def unwrap(spec)
      branches = spec["anyOf"]
      return [spec, false] unless branches

      typed = branches.reject { |b| b["type"] == "null" }
      raise Error, "unsupported schema #{spec}" unless typed.size == 1

      [typed.first, true]
    end

    def attribute(path, spec, required)
      spec, nullable = unwrap(spec)
      type, values, items = case spec["type"]
                            when "string" then spec["enum"] ? [:enum, spec["enum"]] : [:string]
                            when "integer" then [:int]
                            when "number" then [:double]
                            when "boolean" then [:bool]
                            when "array" then [:list, nil, attribute("#{path}[]", spec.fetch("items", {}), false)]
                            when "object" then [:object]
                            else
                              raise Error, "attribute #{path}: unsupported schema #{spec}" unless spec.empty?

                              [:any]
                            end
      Attribute.new(path: path, type: type, required: required, nullable: nullable,
                    non_empty: spec.fetch("minLength", spec.fetch("minItems", 0)).positive?,
                    values: values, items: items)
    end
  end
end
