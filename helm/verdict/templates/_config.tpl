{{/* The daemon's config file (docs/configuration.md), every setting spelled out. */}}
{{- define "verdict.configContent" -}}
policies: {{ include "verdict.policiesDir" . | toJson }}
listen: {{ include "verdict.address" (list .Values.bindAddress .Values.grpc.port) | toJson }}
reload:
  watch: {{ .Values.reload.watch }}
  debounce_ms: {{ .Values.reload.debounceMs | int64 }}
  poll_secs: {{ .Values.reload.pollSecs | int64 }}
  require_tests: {{ .Values.reload.requireTests }}
limits:
  max_resources: {{ .Values.limits.maxResources | int64 }}
  max_actions: {{ .Values.limits.maxActions | int64 }}
  max_attr_depth: {{ .Values.limits.maxAttrDepth | int64 }}
  max_message_bytes: {{ .Values.limits.maxMessageBytes | int64 }}
  request_timeout_ms: {{ .Values.limits.requestTimeoutMs | int64 }}
  max_condition_cost: {{ .Values.limits.maxConditionCost | int64 }}
  max_decisions: {{ .Values.limits.maxDecisions | int64 }}
evaluation:
  threads: {{ .Values.evaluation.threads | int64 }}
  queue: {{ .Values.evaluation.queue | int64 }}
tls:
{{- if .Values.tls.enabled }}
  cert: {{ printf "%s/tls.crt" (include "verdict.tlsDir" .) | toJson }}
  key: {{ printf "%s/tls.key" (include "verdict.tlsDir" .) | toJson }}
{{- else }}
  cert: null
  key: null
{{- end }}
{{- if .Values.tls.clientCA.enabled }}
  client_ca: {{ printf "%s/%s" (include "verdict.clientCADir" .) .Values.tls.clientCA.key | toJson }}
{{- else }}
  client_ca: null
{{- end }}
  reload_secs: {{ .Values.tls.reloadSecs | int64 }}
tokens:
{{- if .Values.tokens.enabled }}
{{- if include "verdict.jwksFromVolume" . }}
  jwks_file: {{ printf "%s/%s" (include "verdict.jwksDir" .) .Values.tokens.jwks.key | toJson }}
{{- else }}
  jwks_file: null
{{- end }}
  jwks_url: {{ if .Values.tokens.jwksUrl }}{{ .Values.tokens.jwksUrl | toJson }}{{ else }}null{{ end }}
  oidc_issuer: {{ if .Values.tokens.oidcIssuer }}{{ .Values.tokens.oidcIssuer | toJson }}{{ else }}null{{ end }}
{{- if include "verdict.jwksCAFromVolume" . }}
  jwks_ca_file: {{ printf "%s/%s" (include "verdict.jwksCADir" .) .Values.tokens.jwksCA.key | toJson }}
{{- else }}
  jwks_ca_file: null
{{- end }}
  issuer: {{ if .Values.tokens.issuer }}{{ .Values.tokens.issuer | toJson }}{{ else }}null{{ end }}
  audiences: {{ .Values.tokens.audiences | toJson }}
  required: {{ .Values.tokens.required }}
{{- else }}
  jwks_file: null
  jwks_url: null
  oidc_issuer: null
  jwks_ca_file: null
  issuer: null
  audiences: []
  required: false
{{- end }}
  # Plain http to a loopback host is for development on one machine, never a pod.
  jwks_allow_http_loopback: false
  jwks_timeout_secs: {{ .Values.tokens.jwksTimeoutSecs | int64 }}
  jwks_refresh_min_secs: {{ .Values.tokens.jwksRefreshMinSecs | int64 }}
  jwks_refresh_max_secs: {{ .Values.tokens.jwksRefreshMaxSecs | int64 }}
  jwks_unknown_kid_secs: {{ .Values.tokens.jwksUnknownKidSecs | int64 }}
  subject_claim: {{ .Values.tokens.subjectClaim | toJson }}
  roles_claim: {{ .Values.tokens.rolesClaim | toJson }}
  capabilities_claim: {{ .Values.tokens.capabilitiesClaim | toJson }}
  leeway_secs: {{ .Values.tokens.leewaySecs | int64 }}
  reload_secs: {{ .Values.tokens.reloadSecs | int64 }}
metrics:
{{- if .Values.metrics.enabled }}
  listen: {{ include "verdict.address" (list .Values.bindAddress .Values.metrics.port) | toJson }}
{{- else }}
  listen: null
{{- end }}
http:
{{- if .Values.http.enabled }}
  listen: {{ include "verdict.address" (list .Values.bindAddress .Values.http.port) | toJson }}
{{- else }}
  listen: null
{{- end }}
  authzen_base_url: {{ if .Values.http.authzenBaseUrl }}{{ .Values.http.authzenBaseUrl | toJson }}{{ else }}null{{ end }}
  authzen_reasons: {{ .Values.http.authzenReasons | toJson }}
ui:
{{- if .Values.ui.enabled }}
  listen: {{ printf "127.0.0.1:%d" (.Values.ui.port | int) | toJson }}
{{- else }}
  listen: null
{{- end }}
  allowed_hosts: {{ .Values.ui.allowedHosts | toJson }}
log:
  format: {{ .Values.log.format | toJson }}
  level: {{ .Values.log.level | toJson }}
audit:
  enabled: {{ .Values.audit.enabled }}
  output: {{ .Values.audit.output | toJson }}
  include_attributes: {{ .Values.audit.includeAttributes }}
  buffer: {{ .Values.audit.buffer | int64 }}
shutdown:
  drain_secs: {{ .Values.shutdown.drainSecs | int64 }}
  timeout_secs: {{ .Values.shutdown.timeoutSecs | int64 }}
{{- end }}
