{{/*
Names and labels shared by every template. Object names are "<fullname>-<suffix>";
every object carries the standard app.kubernetes.io labels.
*/}}

{{- define "moeserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "moeserve.fullname" -}}
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

{{- define "moeserve.operatorName" -}}
{{- printf "%s-operator" (include "moeserve.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "moeserve.gatewayName" -}}
{{- printf "%s-gateway" (include "moeserve.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "moeserve.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels; call with (dict "ctx" $ "component" "operator"). */}}
{{- define "moeserve.labels" -}}
helm.sh/chart: {{ include "moeserve.chart" .ctx }}
{{ include "moeserve.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: moeserve
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Immutable selector labels; call with (dict "ctx" $ "component" "operator"). */}}
{{- define "moeserve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "moeserve.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "moeserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "moeserve.operatorName" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "moeserve.operatorImage" -}}
{{- $image := .Values.operator.image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) }}
{{- end }}
{{- end }}

{{/* Labels that let a Prometheus instance select the monitoring objects. */}}
{{- define "moeserve.monitoringLabels" -}}
{{ include "moeserve.labels" (dict "ctx" . "component" "monitoring") }}
{{- with .Values.monitoring.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}
