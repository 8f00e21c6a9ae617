{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "storage-api.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-qualified unless the release name already contains the chart name. */}}
{{- define "storage-api.fullname" -}}
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

{{- define "storage-api.loadgenName" -}}
{{- printf "%s-loadgen" (include "storage-api.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "storage-api.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "storage-api.labels" -}}
helm.sh/chart: {{ include "storage-api.chart" . }}
{{ include "storage-api.selectorLabels" . }}
app.kubernetes.io/version: {{ include "storage-api.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: storage-api
{{- end }}

{{/* Selector labels of the API (immutable once deployed: keep them minimal). */}}
{{- define "storage-api.selectorLabels" -}}
app.kubernetes.io/name: {{ include "storage-api.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "storage-api.apiSelectorLabels" -}}
{{ include "storage-api.selectorLabels" . }}
app.kubernetes.io/component: api
{{- end }}

{{- define "storage-api.loadgenSelectorLabels" -}}
{{ include "storage-api.selectorLabels" . }}
app.kubernetes.io/component: loadgen
{{- end }}

{{- define "storage-api.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "storage-api.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image tag: the chart's appVersion unless set; "latest" is refused. */}}
{{- define "storage-api.imageTag" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- if eq $tag "latest" }}
{{- fail "image.tag must not be \"latest\": pin a version (it defaults to the chart's appVersion)" }}
{{- end }}
{{- $tag }}
{{- end }}

{{- define "storage-api.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository (include "storage-api.imageTag" .) .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "storage-api.imageTag" .) }}
{{- end }}
{{- end }}

{{/* "true" when the store is shared between replicas (s3), "" otherwise. */}}
{{- define "storage-api.stateless" -}}
{{- if eq .Values.storage.backend "s3" }}true{{ end }}
{{- end }}

{{/* Tri-state switches: null means on for the s3 backend, off otherwise. */}}
{{- define "storage-api.autoscalingEnabled" -}}
{{- $v := .Values.autoscaling.enabled }}
{{- if kindIs "bool" $v }}{{ if $v }}true{{ end }}{{ else }}{{ include "storage-api.stateless" . }}{{ end }}
{{- end }}

{{/* Persistence: null means a PersistentVolumeClaim for the bolt store (its data must outlive the pod), none
for memory (lost on restart by design) and s3 (the objects live in the bucket). */}}
{{- define "storage-api.persistenceEnabled" -}}
{{- $v := .Values.persistence.enabled }}
{{- if kindIs "bool" $v }}{{ if $v }}true{{ end }}{{ else }}{{ if eq .Values.storage.backend "bolt" }}true{{ end }}{{ end }}
{{- end }}

{{- define "storage-api.pdbEnabled" -}}
{{- $v := .Values.podDisruptionBudget.enabled }}
{{- if kindIs "bool" $v }}{{ if $v }}true{{ end }}{{ else }}{{ include "storage-api.stateless" . }}{{ end }}
{{- end }}

{{- define "storage-api.terminationGracePeriodSeconds" -}}
{{- $drain := add (int .Values.config.shutdownDelaySeconds) (int .Values.config.shutdownTimeoutSeconds) }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $drain 10 }}
{{- else }}
{{- $grace := int .Values.terminationGracePeriodSeconds }}
{{- if le $grace $drain }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed config.shutdownDelaySeconds + config.shutdownTimeoutSeconds (%d): the kubelet would kill the server before it drains" $grace $drain) }}
{{- end }}
{{- $grace }}
{{- end }}
{{- end }}

{{/*
Checks that span several values (the schema checks each value alone). Rendered from the Deployment
so every install, upgrade and template run goes through them.
*/}}
{{- define "storage-api.validate" -}}
{{- if lt (int64 .Values.admission.maxInflightBytes) (int64 .Values.storage.maxObjectSize) }}
{{- fail (printf "admission.maxInflightBytes (%d) must be at least storage.maxObjectSize (%d): the largest objects could never be admitted" (int64 .Values.admission.maxInflightBytes) (int64 .Values.storage.maxObjectSize)) }}
{{- end }}
{{- if not (include "storage-api.stateless" .) }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail (printf "replicaCount=%d needs a shared store: the %s backend keeps its data inside one pod, so replicas would each see different objects. Use storage.backend=s3 to run several replicas, or set replicaCount=1." (int .Values.replicaCount) .Values.storage.backend) }}
{{- end }}
{{- if include "storage-api.autoscalingEnabled" . }}
{{- fail (printf "autoscaling.enabled=true needs a shared store: the %s backend keeps its data inside one pod, so it cannot run more than one replica. Use storage.backend=s3, or disable autoscaling." .Values.storage.backend) }}
{{- end }}
{{- end }}
{{- if eq .Values.storage.backend "s3" }}
{{- if not .Values.storage.s3.bucket }}
{{- fail "storage.backend=s3 needs storage.s3.bucket" }}
{{- end }}
{{- if include "storage-api.persistenceEnabled" . }}
{{- fail "persistence.enabled=true has no use with storage.backend=s3: the objects live in the bucket" }}
{{- end }}
{{- end }}
{{- if include "storage-api.autoscalingEnabled" . }}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Pod and container security contexts meeting Pod Security Standards "restricted". */}}
{{- define "storage-api.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "storage-api.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The OTEL_* variables of a container (docs/tracing.md), none when tracing.otlpEndpoint is empty.
Call with (dict "root" $ "service" "storage-api").
*/}}
{{- define "storage-api.tracingEnv" -}}
{{- with .root.Values.tracing }}
{{- if .otlpEndpoint }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .otlpEndpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ $.service | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .sampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerRatio | toString | quote }}
{{- $attrs := list "k8s.namespace.name=$(POD_NAMESPACE)" "k8s.pod.name=$(POD_NAME)" }}
{{- range $k, $v := .resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%s" $k $v) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- end }}
{{- end }}
{{- end }}
