//! The schema as JSON Schema (draft 2020-12), so callers can validate requests on their side.
