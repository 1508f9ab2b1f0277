{{/* Chart name, or nameOverride. */}}
{{- define "wpa.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's resources: fullnameOverride, or "<release>-<name>", or "<release>" when the
release name already contains the chart name (release "wpa" gives "wpa").
*/}}
{{- define "wpa.fullname" -}}
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

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "wpa.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "wpa.labels" -}}
helm.sh/chart: {{ include "wpa.chart" . }}
{{ include "wpa.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select the pods (Deployment, Service, PodDisruptionBudget, anti-affinity). */}}
{{- define "wpa.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wpa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "wpa.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wpa.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, or repository@digest. */}}
{{- define "wpa.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* true in selfSigned mode (as a string: "true" or ""). */}}
{{- define "wpa.selfSigned" -}}
{{- if eq .Values.tls.mode "selfSigned" }}true{{ end }}
{{- end }}

{{/* Replicas: replicaCount, or 2 in both TLS modes (selfSigned replicas share the CA Secret). */}}
{{- define "wpa.replicas" -}}
{{- int (default 2 .Values.replicaCount) }}
{{- end }}

{{/* Name of the Secret holding the installation's CA in selfSigned mode (--ca-secret). */}}
{{- define "wpa.caSecretName" -}}
{{- printf "%s-webhook-ca" (include "wpa.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of the Secret holding the serving certificate (certManager mode). */}}
{{- define "wpa.servingCertName" -}}
{{- printf "%s-serving-cert" (include "wpa.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* DNS name the API server calls and checks in the serving certificate: <service>.<namespace>.svc. */}}
{{- define "wpa.serviceDNS" -}}
{{- printf "%s.%s.svc" (include "wpa.fullname" .) .Release.Namespace }}
{{- end }}

{{/* Name of both webhook configurations (also --webhook-config-name, and the RBAC resourceName). */}}
{{- define "wpa.webhookConfigName" -}}
{{- include "wpa.fullname" . }}
{{- end }}

{{/*
namespaceSelector of every webhook. optOut: by name (kubernetes.io/metadata.name, set on >= 1.21) and by the
opt-out label (which works on 1.20 too). optIn: only namespaces labelled wpa.datadoghq.com/webhook=enabled,
and never kube-system or the release namespace even if labelled.
*/}}
{{- define "wpa.namespaceSelector" -}}
{{- $excluded := concat (list "kube-system" .Release.Namespace) .Values.webhook.namespaceSelector.excludeNamespaces | uniq -}}
namespaceSelector:
  matchExpressions:
  - key: kubernetes.io/metadata.name
    operator: NotIn
    values: {{ toJson $excluded }}
{{- if eq .Values.webhook.namespaceSelector.mode "optIn" }}
  - key: wpa.datadoghq.com/webhook
    operator: In
    values: ["enabled"]
{{- else }}
  - key: wpa.datadoghq.com/webhook
    operator: NotIn
    values: ["disabled"]
{{- end }}
{{- end }}

{{/* matchConditions (Kubernetes >= 1.28 and webhook.skipObjectsBeingDeleted): objects being deleted are not sent. */}}
{{- define "wpa.matchConditions" -}}
{{- if and .Values.webhook.skipObjectsBeingDeleted (semverCompare ">=1.28-0" .Capabilities.KubeVersion.Version) }}
matchConditions:
- name: not-being-deleted
  expression: "!has(object.metadata.deletionTimestamp)"
{{- end }}
{{- end }}

{{/* The webhooks' Service reference. $path is /validate or /mutate. */}}
{{- define "wpa.clientConfig" -}}
{{- $ := index . 0 }}
{{- $path := index . 1 -}}
clientConfig:
  service:
    name: {{ include "wpa.fullname" $ }}
    namespace: {{ $.Release.Namespace }}
    path: {{ $path }}
    port: {{ $.Values.service.port }}
{{- end }}

{{/* Annotations of the webhook configurations: cert-manager's cainjector source in certManager mode. */}}
{{- define "wpa.webhookAnnotations" -}}
{{- if not (include "wpa.selfSigned" .) }}
annotations:
  cert-manager.io/inject-ca-from: {{ printf "%s/%s" .Release.Namespace (include "wpa.servingCertName" .) }}
{{- end }}
{{- end }}
