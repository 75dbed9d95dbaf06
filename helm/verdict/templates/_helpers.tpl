{{/*
Names, labels, and the few values the templates derive from others.
*/}}

{{- define "verdict.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "verdict.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "verdict.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "verdict.selectorLabels" -}}
app.kubernetes.io/name: {{ include "verdict.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "verdict.labels" -}}
helm.sh/chart: {{ include "verdict.chart" . }}
{{ include "verdict.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: policy-decision-point
{{- end }}

{{- define "verdict.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "verdict.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "verdict.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "verdict.gitSyncImage" -}}
{{- printf "%s:%s" .Values.gitSync.image.repository .Values.gitSync.image.tag }}
{{- end }}

{{/* host:port for a listener; IPv6 hosts get brackets. */}}
{{- define "verdict.address" -}}
{{- $host := index . 0 }}
{{- $port := index . 1 | int }}
{{- if contains ":" $host }}
{{- printf "[%s]:%d" $host $port }}
{{- else }}
{{- printf "%s:%d" $host $port }}
{{- end }}
{{- end }}

{{/* Where the daemon's files are mounted. */}}
{{- define "verdict.configDir" -}}/etc/verdict/config{{- end }}
{{- define "verdict.configFile" -}}{{ include "verdict.configDir" . }}/verdict.yaml{{- end }}
{{- define "verdict.tlsDir" -}}/etc/verdict/tls{{- end }}
{{- define "verdict.clientCADir" -}}/etc/verdict/client-ca{{- end }}
{{- define "verdict.jwksDir" -}}/etc/verdict/jwks{{- end }}
{{- define "verdict.jwksCADir" -}}/etc/verdict/jwks-ca{{- end }}
{{/* Non-empty when token keys come from a ConfigMap or Secret (tokens.jwks). */}}
{{- define "verdict.jwksFromVolume" -}}
{{- if and .Values.tokens.enabled (or .Values.tokens.jwks.configMapName .Values.tokens.jwks.secretName) }}true{{ end }}
{{- end }}
{{/* Non-empty when the identity provider's CA comes from a ConfigMap or Secret (tokens.jwksCA). */}}
{{- define "verdict.jwksCAFromVolume" -}}
{{- if and .Values.tokens.enabled (or .Values.tokens.jwksCA.configMapName .Values.tokens.jwksCA.secretName) }}true{{ end }}
{{- end }}
{{- define "verdict.gitRoot" -}}/git{{- end }}

{{/* The policy directory the daemon reads: the ConfigMap mount, or git-sync's link. */}}
{{- define "verdict.policiesDir" -}}
{{- if eq .Values.policies.source "gitSync" }}
{{- $sub := trimAll "/" .Values.gitSync.subPath }}
{{- if $sub }}
{{- printf "%s/current/%s" (include "verdict.gitRoot" .) $sub }}
{{- else }}
{{- printf "%s/current" (include "verdict.gitRoot" .) }}
{{- end }}
{{- else }}
{{- print "/etc/verdict/policies" }}
{{- end }}
{{- end }}

{{- define "verdict.policiesConfigMapName" -}}
{{- if eq .Values.policies.source "existingConfigMap" }}
{{- .Values.policies.existingConfigMap }}
{{- else }}
{{- printf "%s-policies" (include "verdict.fullname" .) }}
{{- end }}
{{- end }}

{{- define "verdict.clientCASecret" -}}
{{- default .Values.tls.secretName .Values.tls.clientCA.secretName }}
{{- end }}

{{- define "verdict.terminationGracePeriodSeconds" -}}
{{- $needed := add .Values.shutdown.drainSecs .Values.shutdown.timeoutSecs }}
{{- if .Values.terminationGracePeriodSeconds }}
{{- .Values.terminationGracePeriodSeconds | int64 }}
{{- else }}
{{- add $needed 10 }}
{{- end }}
{{- end }}

{{/*
The policy files as ConfigMap data (source files or inline): name -> text. Paths under the
chart's policies/ are flattened ("team/a.yaml" -> "team__a.yaml": ConfigMap keys cannot hold
'/'); test suites (*_test.yaml) and hidden files are left out, as the daemon would skip them.
*/}}
{{- define "verdict.policyFiles" -}}
{{- $files := dict }}
{{- if eq .Values.policies.source "inline" }}
{{- range $name, $text := .Values.policies.inline }}
{{- $_ := set $files $name $text }}
{{- end }}
{{- else if eq .Values.policies.source "files" }}
{{- range $path, $_ := .Files.Glob "policies/**.{yaml,yml}" }}
{{- $relative := trimPrefix "policies/" $path }}
{{- if not (or (regexMatch "(^|/)[.]" $relative) (regexMatch "[._]test[.]ya?ml$" $relative)) }}
{{- $key := replace "/" "__" $relative }}
{{- if hasKey $files $key }}
{{- fail (printf "policies/%s: its ConfigMap key %s is taken by another file" $relative $key) }}
{{- end }}
{{- if not (regexMatch "^[-._a-zA-Z0-9]+$" $key) }}
{{- fail (printf "policies/%s: %s is not a valid ConfigMap key (letters, digits, '-', '_', '.')" $relative $key) }}
{{- end }}
{{- $_ := set $files $key ($.Files.Get $path) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $files }}
{{- end }}

{{/* How kubelet probes the daemon. gRPC probes cannot speak TLS: with TLS on, plain-HTTP
/healthz on the metrics listener, which reports the same health. */}}
{{- define "verdict.probeHandler" -}}
{{- if .Values.tls.enabled -}}
httpGet:
  path: /healthz
  port: metrics
{{- else -}}
grpc:
  port: {{ .Values.grpc.port }}
{{- end }}
{{- end }}

{{/* Settings that are each valid but do not fit together: a clear message at install time. */}}
{{- define "verdict.validate" -}}
{{- $source := .Values.policies.source }}
{{- if and (eq $source "inline") (not .Values.policies.inline) }}
{{- fail "policies.source is inline but policies.inline is empty: the daemon refuses to start without policies" }}
{{- end }}
{{- if and (eq $source "files") (eq (include "verdict.policyFiles" .) "{}") }}
{{- fail "policies.source is files but the chart's policies/ directory has no *.yaml file" }}
{{- end }}
{{- if and (eq $source "existingConfigMap") (not .Values.policies.existingConfigMap) }}
{{- fail "policies.source is existingConfigMap: set policies.existingConfigMap to the ConfigMap's name" }}
{{- end }}
{{- if and (eq $source "gitSync") (not .Values.gitSync.repo) }}
{{- fail "policies.source is gitSync: set gitSync.repo to the policy repository" }}
{{- end }}
{{- if and (eq $source "gitSync") .Values.gitSync.nativeSidecar (not (semverCompare ">=1.29.0-0" .Capabilities.KubeVersion.Version)) }}
{{- fail (printf "gitSync.nativeSidecar needs Kubernetes >= 1.29 (this is %s): set gitSync.nativeSidecar=false" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- if and .Values.gitSync.sshSecret .Values.gitSync.credentialsSecret }}
{{- fail "gitSync.sshSecret and gitSync.credentialsSecret: set one of them (SSH or HTTPS)" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled: set tls.secretName to a kubernetes.io/tls Secret" }}
{{- end }}
{{- if and .Values.tls.clientCA.enabled (not .Values.tls.enabled) }}
{{- fail "tls.clientCA.enabled (mutual TLS) needs tls.enabled" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.metrics.enabled) }}
{{- fail "tls.enabled needs metrics.enabled: kubelet cannot speak TLS to gRPC probes, so the probes use GET /healthz on the (plain HTTP) metrics port" }}
{{- end }}
{{- if .Values.tokens.enabled }}
{{- if and .Values.tokens.jwks.configMapName .Values.tokens.jwks.secretName }}
{{- fail "tokens.jwks: set one of configMapName and secretName, not both" }}
{{- end }}
{{- $sources := 0 }}
{{- if include "verdict.jwksFromVolume" . }}{{ $sources = add1 $sources }}{{ end }}
{{- if .Values.tokens.jwksUrl }}{{ $sources = add1 $sources }}{{ end }}
{{- if .Values.tokens.oidcIssuer }}{{ $sources = add1 $sources }}{{ end }}
{{- if eq $sources 0 }}
{{- fail "tokens.enabled: set where the keys are: tokens.jwks.configMapName or tokens.jwks.secretName (a JWKS), tokens.jwksUrl, or tokens.oidcIssuer" }}
{{- end }}
{{- if gt $sources 1 }}
{{- fail "tokens: tokens.jwks, tokens.jwksUrl and tokens.oidcIssuer are alternatives: set one" }}
{{- end }}
{{- if and .Values.tokens.jwksCA.configMapName .Values.tokens.jwksCA.secretName }}
{{- fail "tokens.jwksCA: set one of configMapName and secretName, not both" }}
{{- end }}
{{- if and (include "verdict.jwksCAFromVolume" .) (include "verdict.jwksFromVolume" .) }}
{{- fail "tokens.jwksCA needs tokens.jwksUrl or tokens.oidcIssuer (a JWKS in a volume is not fetched)" }}
{{- end }}
{{- if not (or .Values.tokens.issuer .Values.tokens.oidcIssuer) }}
{{- fail "tokens.enabled needs tokens.issuer (the iss tokens carry)" }}
{{- end }}
{{- if and .Values.tokens.issuer .Values.tokens.oidcIssuer (ne .Values.tokens.issuer .Values.tokens.oidcIssuer) }}
{{- fail "tokens.issuer differs from tokens.oidcIssuer: leave tokens.issuer empty" }}
{{- end }}
{{- if not .Values.tokens.audiences }}
{{- fail "tokens.enabled needs tokens.audiences (the aud tokens name)" }}
{{- end }}
{{- else if .Values.tokens.required }}
{{- fail "tokens.required needs tokens.enabled" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- $ports := list (int .Values.grpc.port) }}
{{- if .Values.metrics.enabled }}
{{- if has (int .Values.metrics.port) $ports }}
{{- fail (printf "metrics.port %d is already the gRPC port" (int .Values.metrics.port)) }}
{{- end }}
{{- $ports = append $ports (int .Values.metrics.port) }}
{{- end }}
{{- if and .Values.http.enabled (has (int .Values.http.port) $ports) }}
{{- fail (printf "http.port %d is already taken by another listener" (int .Values.http.port)) }}
{{- end }}
{{- $needed := add .Values.shutdown.drainSecs .Values.shutdown.timeoutSecs }}
{{- if and .Values.terminationGracePeriodSeconds (le (int64 .Values.terminationGracePeriodSeconds) (int64 $needed)) }}
{{- fail (printf "terminationGracePeriodSeconds %d must exceed shutdown.drainSecs + shutdown.timeoutSecs (%d), or pods are killed while draining" (int64 .Values.terminationGracePeriodSeconds) (int64 $needed)) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not (or .Values.autoscaling.targetCPUUtilizationPercentage .Values.autoscaling.targetMemoryUtilizationPercentage)) }}
{{- fail "autoscaling.enabled: set targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas exceeds autoscaling.maxReplicas" }}
{{- end }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and $pdb.enabled (eq (toString $pdb.minAvailable) "") (eq (toString $pdb.maxUnavailable) "") }}
{{- fail "podDisruptionBudget.enabled: set minAvailable or maxUnavailable" }}
{{- end }}
{{- if and $pdb.enabled (ne (toString $pdb.minAvailable) "") (ne (toString $pdb.maxUnavailable) "") }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both" }}
{{- end }}
{{- end }}
