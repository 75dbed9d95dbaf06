"""May physician dr-house read and delete patient 123? One Check, printed.

    python clients/python/examples/check.py 127.0.0.1:50051
"""

import sys

from verdict import Verdict

target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
with Verdict(target) as verdict:
    result = verdict.check(
        principal={"id": "dr-house", "roles": ["physician"], "scopes": ["user/*.cruds"],
                   "attr": {"practice_id": "7"}},
        resources=[({"kind": "Patient", "id": "123",
                     "attr": {"practice_id": "7", "patient_id": "123", "celebrity": False}},
                    ["read", "delete"])],
    )
    for resource in result:
        for action, d in sorted(resource.actions.items()):
            print(f"{resource.kind}/{resource.id} {action}: {d.effect.upper()} - {d.reason}")
