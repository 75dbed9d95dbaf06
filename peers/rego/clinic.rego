# The bundled clinic (policies/clinic/*.yaml) in Rego, evaluated by regorus. Input, built per
# (resource, action) by peers/src/rego.rs from Verdict's request types serialized as JSON:
#   {"principal": {id, roles, capabilities, scopes, client_id, attr},
#    "resource": {kind, id, attr}, "action": "read"}
# Verdict's decision procedure: the schema first (a principal, resource or action the clinic's
# schema refuses is denied), then deny overrides (a deny rule that holds denies), then the SMART
# scope ceiling, then allow, else deny. Once the input fits the schema every attribute a rule
# reads has its declared type, and each rule tests the presence of the optional ones it reads, as
# the clinic's CEL does with has(): no rule meets an attribute it cannot compare.
package verdict.clinic

import rego.v1

default allow := false

allow if {
	fits_the_schema
	not deny
	scope_gate_passes
	some_allow
}

has_role(name) if name in input.principal.roles

has_capability(name) if name in input.principal.capabilities

# ---- schema.yaml: the clinic's schema, and the input held to it --------------------------------

# Attribute types: string, bool, number (Verdict's double), list<string>, enum (a string among
# values); optional ones say required: false; non_empty strings and lists must not be empty.
principal_attributes := {
	"practice_id": {"type": "string", "required": false, "non_empty": true},
	"licensed_states": {"type": "list<string>", "required": false},
	"patient_id": {"type": "string", "required": false, "non_empty": true},
	"patient": {"type": "string", "required": false, "non_empty": true},
}

kinds := {
	"Patient": {
		"actions": {"read", "search", "create", "update", "delete"},
		"attributes": {
			"practice_id": {"type": "string", "non_empty": true},
			"patient_id": {"type": "string", "non_empty": true},
			"name": {"type": "string", "required": false},
			"state": {"type": "string", "required": false},
			"celebrity": {"type": "bool"},
			"primary_physician_id": {"type": "string", "required": false, "non_empty": true},
		},
	},
	"Note": {
		"actions": {"read", "search", "create", "update", "delete", "sign"},
		"attributes": {
			"practice_id": {"type": "string", "non_empty": true},
			"patient_id": {"type": "string", "non_empty": true},
			"author_id": {"type": "string", "required": false, "non_empty": true},
			"signed": {"type": "bool"},
		},
	},
	"Observation": {
		"actions": {"read", "search", "create", "update", "delete"},
		"attributes": {
			"practice_id": {"type": "string", "non_empty": true},
			"patient_id": {"type": "string", "non_empty": true},
			"category": {"type": "enum", "required": false, "values": {
				"activity", "exam", "imaging", "laboratory", "procedure", "social-history",
				"survey", "therapy", "vital-signs",
			}},
		},
	},
	"MedicationRequest": {
		"actions": {"read", "search", "create", "update", "delete"},
		"attributes": {
			"practice_id": {"type": "string", "non_empty": true},
			"patient_id": {"type": "string", "non_empty": true},
			"patient_state": {"type": "string", "non_empty": true},
		},
	},
	"Invoice": {
		"actions": {"read", "search", "create", "update", "delete"},
		"attributes": {
			"practice_id": {"type": "string", "non_empty": true},
			"patient_id": {"type": "string", "non_empty": true},
			"amount": {"type": "number"},
		},
	},
}

fits_the_schema if {
	principal_fits
	kind := kinds[input.resource.kind]
	input.action in kind.actions
	attributes_fit(kind.attributes, attributes(input.resource.attr), false)
}

# The principal's claims: the declared ones typed, others accepted (additional_attributes: true).
principal_fits if attributes_fit(principal_attributes, attributes(input.principal.attr), true)

# Attributes: an object, or null (none).
attributes(attr) := attr if is_object(attr)

attributes(null) := {}

attributes_fit(declared, attr, open) if {
	every name, value in attr {
		attribute_fits(declared, name, value, open)
	}
	every name, spec in declared {
		present_if_required(spec, attr, name)
	}
}

# A null is an absent attribute.
attribute_fits(_, _, null, _) := true

attribute_fits(declared, name, value, _) if {
	value != null
	spec := declared[name]
	typed(spec.type, spec, value)
	not empty_but_required_not_to_be(spec, value)
}

attribute_fits(declared, name, value, true) if {
	value != null
	not declared[name]
}

present_if_required(spec, _, _) if spec.required == false

present_if_required(spec, attr, name) if {
	not spec.required == false
	attr[name] != null
}

typed("string", _, value) if is_string(value)

typed("bool", _, value) if is_boolean(value)

typed("number", _, value) if is_number(value)

typed("list<string>", _, value) if {
	is_array(value)
	every item in value {
		is_string(item)
	}
}

typed("enum", spec, value) if {
	is_string(value)
	value in spec.values
}

empty_but_required_not_to_be(spec, value) if {
	spec.non_empty == true
	count(value) == 0
}

# ---- deny rules (policy/rule of Verdict in comments) ------------------------------------------

# celebrity-patients/only-the-primary-physician
deny if {
	input.resource.kind == "Patient"
	input.resource.attr.celebrity == true
	not primary_physician_of_record
}

primary_physician_of_record if {
	input.resource.attr.primary_physician_id != null
	input.resource.attr.primary_physician_id == input.principal.id
}

# prescribing-license/licensed-in-patient-state
deny if {
	input.resource.kind == "MedicationRequest"
	input.action == "create"
	not licensed_in_patient_state
}

licensed_in_patient_state if {
	is_array(input.principal.attr.licensed_states)
	input.resource.attr.patient_state in input.principal.attr.licensed_states
}

# nurse/no-prescribing
deny if {
	has_role("nurse")
	input.resource.kind == "MedicationRequest"
	input.action == "create"
}

# admin-staff/no-clinical-records
deny if {
	has_role("admin_staff")
	input.resource.kind in {"Note", "Observation"}
}

# tenancy/patients-see-only-their-own-records
deny if {
	has_role("patient")
	not own_record
}

own_record if {
	is_string(input.principal.attr.patient_id)
	input.resource.attr.patient_id == input.principal.attr.patient_id
}

# tenancy/staff-stay-in-their-practice
deny if {
	acts_for_a_practice
	not same_practice
}

# whoever holds a capability or any role but system and patient
acts_for_a_practice if {
	some role in input.principal.roles
	not role in {"system", "patient"}
}

acts_for_a_practice if count(input.principal.capabilities) > 0

same_practice if {
	is_string(input.principal.attr.practice_id)
	input.resource.attr.practice_id == input.principal.attr.practice_id
}

# ---- smart-on-fhir: the scope gate on every kind -----------------------------------------------

# Signing a note changes it: it needs a scope that allows updates.
action_letter := {"read": "r", "search": "s", "create": "c", "update": "u", "delete": "d", "sign": "u"}

scope_gate_passes if {
	letter := action_letter[input.action]
	some scope in input.principal.scopes
	scope_covers(scope, letter)
}

# A SMART scope, parsed as Verdict's src/smart does: compartment/Kind.permissions?k=v&k=v
scope_covers(scope, letter) if {
	slash := indexof(scope, "/")
	slash >= 0
	compartment := substring(scope, 0, slash)
	compartment in {"patient", "user", "system"}
	[path, query] := path_and_query(substring(scope, slash + 1, -1))
	parts := split(path, ".")
	count(parts) == 2
	parts[0] in {"*", input.resource.kind}
	permits(parts[1], letter)
	compartment_covers(compartment)
	parameters_hold(query)
}

path_and_query(rest) := [substring(rest, 0, q), substring(rest, q + 1, -1)] if {
	q := indexof(rest, "?")
	q >= 0
}

path_and_query(rest) := [rest, null] if indexof(rest, "?") < 0

# v1 permissions
permits("read", letter) if letter in {"r", "s"}

permits("write", letter) if letter in {"c", "u", "d"}

permits("*", _) := true

# v2 permissions: letters of "cruds", in that order, each at most once
v2_permissions := {
	"c", "r", "u", "d", "s", "cr", "cu", "cd", "cs", "ru", "rd", "rs", "ud", "us", "ds", "cru",
	"crd", "crs", "cud", "cus", "cds", "rud", "rus", "rds", "uds", "crud", "crus", "crds", "cuds",
	"ruds", "cruds",
}

permits(letters, letter) if {
	letters in v2_permissions
	contains(letters, letter)
}

compartment_covers(compartment) if compartment != "patient"

# a patient/ scope reaches only the launch patient's resources
compartment_covers("patient") if {
	is_string(input.principal.attr.patient)
	is_string(input.resource.attr.patient_id)
	input.principal.attr.patient == input.resource.attr.patient_id
}

parameters_hold(null) := true

# v2 granular parameters: each k=v requires the resource attribute k to be the string v
parameters_hold(query) if {
	is_string(query)
	every pair in split(query, "&") {
		eq := indexof(pair, "=")
		eq > 0
		input.resource.attr[substring(pair, 0, eq)] == substring(pair, eq + 1, -1)
	}
}

# ---- allow rules ------------------------------------------------------------------------------

# physician/clinical-care
some_allow if {
	has_role("physician")
	input.action in {"read", "search", "create", "update"}
	input.resource.kind in {"Patient", "Note", "Observation", "MedicationRequest", "Invoice"}
}

# physician/sign-own-notes (derived role note_author)
some_allow if {
	has_role("physician")
	input.action == "sign"
	input.resource.kind == "Note"
	input.resource.attr.author_id != null
	input.resource.attr.author_id == input.principal.id
}

# nurse/chart-work
some_allow if {
	has_role("nurse")
	input.action in {"read", "search", "update"}
	input.resource.kind in {"Patient", "Observation"}
}

# admin-staff/front-desk
some_allow if {
	has_role("admin_staff")
	input.action in {"read", "search"}
	input.resource.kind in {"Patient", "Invoice"}
}

# admin-staff/billing
some_allow if {
	has_role("admin_staff")
	input.action in {"create", "update"}
	input.resource.kind == "Invoice"
}

# patient/own-chart
some_allow if {
	has_role("patient")
	input.action in {"read", "search"}
	input.resource.kind in {"Patient", "Observation", "MedicationRequest", "Invoice"}
}

# patient/signed-notes
some_allow if {
	has_role("patient")
	input.action in {"read", "search"}
	input.resource.kind == "Note"
	input.resource.attr.signed == true
}

# system/read-everything
some_allow if {
	has_role("system")
	input.action in {"read", "search"}
}

# clinic-capabilities/view-patient
some_allow if {
	has_capability("view-patient")
	input.resource.kind == "Patient"
	input.action == "read"
}

# clinic-capabilities/sign-a-note
some_allow if {
	has_capability("sign-a-note")
	capability_grants["sign-a-note"][input.resource.kind][input.action]
}

capability_grants := {"sign-a-note": {"Patient": {"read": true}, "Note": {"read": true, "sign": true}}}
