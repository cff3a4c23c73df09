{{/* Chart name, truncated to the 63 characters DNS names allow. */}}
{{- define "avmon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "avmon.fullname" -}}
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

{{- define "avmon.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "avmon.labels" -}}
{{ include "avmon.selectorLabels" . }}
{{ include "avmon.metaLabels" . }}
{{- end }}

{{/* The labels that select nothing. The helm test pod takes these plus its own
component, so that the Service, PDB, HPA and NetworkPolicy (which select on the
monitor's) never pick it up. */}}
{{- define "avmon.metaLabels" -}}
helm.sh/chart: {{ include "avmon.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: avmon
{{- end }}

{{- define "avmon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "avmon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: monitor
{{- end }}

{{- define "avmon.redis.fullname" -}}
{{- printf "%s-redis" (include "avmon.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "avmon.redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "avmon.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{- define "avmon.redis.labels" -}}
helm.sh/chart: {{ include "avmon.chart" . }}
{{ include "avmon.redis.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: avmon
{{- end }}

{{- define "avmon.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "avmon.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "avmon.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The port the image's CMD binds (Dockerfile: uvicorn --port 8080, EXPOSE 8080). */}}
{{- define "avmon.containerPort" -}}8080{{- end }}

{{/* True when the chart runs its own Redis. */}}
{{- define "avmon.redis.bundled" -}}
{{- if and (not .Values.redis.external.url) (not .Values.redis.external.existingSecret) }}true{{ end }}
{{- end }}

{{/* Secret holding the chart-managed secret values (API token, webhook secret, Redis URL). */}}
{{- define "avmon.secretName" -}}
{{- include "avmon.fullname" . }}
{{- end }}

{{- define "avmon.hasChartSecret" -}}
{{- if or (and (not .Values.auth.existingSecret) (or .Values.auth.apiToken .Values.auth.webhookSecret .Values.auth.generateApiToken)) .Values.redis.external.url (include "avmon.redis.auth" .) }}true{{ end }}
{{- end }}

{{/* True when the API token comes from a Secret (given, existing or generated). */}}
{{- define "avmon.apiTokenSet" -}}
{{- if or .Values.auth.existingSecret .Values.auth.apiToken .Values.auth.generateApiToken }}true{{ end }}
{{- end }}

{{/* True when the bundled Redis requires a password. */}}
{{- define "avmon.redis.auth" -}}
{{- if and (include "avmon.redis.bundled" .) .Values.redis.bundled.auth }}true{{ end }}
{{- end }}

{{/* A generated secret value: the one already in the release's Secret (so upgrades keep
it), else a new random one. ``lookup`` is empty under `helm template`: a new value. */}}
{{- define "avmon.generated" -}}
{{- $secret := lookup "v1" "Secret" .ctx.Release.Namespace (include "avmon.secretName" .ctx) }}
{{- if and $secret $secret.data (hasKey $secret.data .key) }}
{{- index $secret.data .key | b64dec }}
{{- else }}
{{- randAlphaNum 40 }}
{{- end }}
{{- end }}

{{/* Hardened container security context shared by every container of the chart. */}}
{{- define "avmon.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Validation that values.schema.json cannot express. */}}
{{- define "avmon.validate" -}}
{{- if .Values.autoscaling.enabled }}
{{- if not (and .Values.resources.requests .Values.resources.requests.cpu) }}
{{- fail "autoscaling.enabled=true needs resources.requests.cpu: the HPA measures CPU utilization relative to the request and does nothing without one. Set resources.requests.cpu (e.g. \"1\") or autoscaling.enabled=false." }}
{{- end }}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- fail (printf "autoscaling.minReplicas (%d) must not exceed autoscaling.maxReplicas (%d)" (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- end }}
{{- end }}
{{- $handoff := add (int .Values.preStopSleepSeconds) (mul 3 (ceil .Values.config.leaseTtl | int)) 5 }}
{{- if lt (int .Values.terminationGracePeriodSeconds) (int $handoff) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) is too short for the handoff: it must cover preStopSleepSeconds + 3 lease TTLs + 5 s = %d s" (int .Values.terminationGracePeriodSeconds) (int $handoff)) }}
{{- end }}
{{- end }}
