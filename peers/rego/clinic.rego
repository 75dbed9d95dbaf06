# The bundled clinic (policies/clinic/*.yaml) in Rego, evaluated by regorus. Input, built per
# (resource, action) by peers/src/rego.rs from Verdict's request types serialized as JSON:
#   {"principal": {id, roles, capabilities, scopes, client_id, attr},
#    "resource": {kind, id, attr}, "action": "read"}
# Verdict's decision procedure: deny overrides (a deny rule that holds, or whose condition could
# not be evaluated, denies: fail closed), then the SMART scope ceiling, then allow, else deny.
# Rego has no evaluation errors here: each deny rule is written as "not <the guard passes>", and
# the guard passes only when the attributes it reads are present (non-null) and well typed, which
# is exactly when Verdict's CEL condition evaluates.
package verdict.clinic

import rego.v1

default allow := false

allow if {
	not deny
	scope_gate_passes
	some_allow
}

has_role(name) if name in input.principal.roles

has_capability(name) if name in input.principal.capabilities

# ---- deny rules (policy/rule of Verdict in comments) ------------------------------------------

# celebrity-patients/only-the-primary-physician
deny if {
	input.resource.kind == "Patient"
	not celebrity_guard_passes
}

celebrity_guard_passes if {
	input.resource.attr.celebrity != null
	input.resource.attr.celebrity != true
}

celebrity_guard_passes if {
	input.resource.attr.celebrity == true
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
	input.resource.attr.patient_state != null
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
	input.resource.attr.patient_id != null
	input.resource.attr.patient_id == input.principal.attr.patient_id
}

# tenancy/staff-stay-in-their-practice
deny if {
	acts_for_a_practice
	not same_practice
}

acts_for_a_practice if {
	not has_role("system")
	not has_role("patient")
}

same_practice if {
	input.resource.attr.practice_id != null
	input.resource.attr.practice_id == input.principal.attr.practice_id
}

# ---- smart-on-fhir: the scope gate on Observation ---------------------------------------------

gated_kinds := {"Observation"}

action_letter := {"read": "r", "search": "s", "create": "c", "update": "u", "delete": "d"}

scope_gate_passes if not input.resource.kind in gated_kinds

scope_gate_passes if {
	input.resource.kind in gated_kinds
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
