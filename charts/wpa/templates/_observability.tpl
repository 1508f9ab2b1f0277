{{/* Container port of /healthz, /readyz and /metrics (--health-listen). */}}
{{- define "wpa.healthPort" -}}
{{- .Values.healthPort | int }}
{{- end }}

{{/*
Namespaces the reconciler watches, comma-separated (empty: all): watchNamespaces, or upstream's
watchAllNamespaces (false: the release namespace only). Both at once is refused.
*/}}
{{- define "wpa.watchNamespaces" -}}
{{- $all := .Values.watchAllNamespaces }}
{{- if and (not (kindIs "invalid" $all)) .Values.watchNamespaces }}
{{- fail (printf "watchAllNamespaces (upstream's key) and watchNamespaces are both set: keep watchNamespaces (%s), or unset it and use watchAllNamespaces" (join "," .Values.watchNamespaces)) }}
{{- end }}
{{- if eq $all false }}
{{- .Release.Namespace }}
{{- else }}
{{- join "," .Values.watchNamespaces }}
{{- end }}
{{- end }}

{{/* WPA label keys copied onto wpa_controller_labels_info: reconciler.labelsAsTags and upstream's labelsAsTags (JSON list). */}}
{{- define "wpa.labelsAsTags" -}}
{{- concat .Values.reconciler.labelsAsTags .Values.labelsAsTags | uniq | toJson }}
{{- end }}

{{/*
The instances of the Datadog Agent's prometheus check (Autodiscovery v1 annotation), as upstream's chart
writes them, on wpa's metrics port. label_joins names the labels as wpa exports them: a label key's
characters other than letters, digits and _ become _ (app.kubernetes.io/name: app_kubernetes_io_name).
*/}}
{{- define "wpa.datadogInstances" -}}
{{- $url := print "http://%%host%%:" (include "wpa.healthPort" .) "/metrics" }}
{{- $instance := dict "prometheus_url" $url "namespace" "watermarkpodautoscaler" "metrics" .Values.datadog.autodiscovery.metrics }}
{{- $labels := list }}
{{- range (include "wpa.labelsAsTags" . | fromJsonArray) }}
{{- $name := regexReplaceAll "[^a-zA-Z0-9_]" . "_" }}
{{- if regexMatch "^[0-9]" $name }}{{ $name = print "_" $name }}{{ end }}
{{- $labels = append $labels $name }}
{{- end }}
{{- if $labels }}
{{- $join := dict "labels_to_match" (list "wpa_name" "resource_namespace") "labels_to_get" $labels }}
{{- $_ := set $instance "label_joins" (dict "wpa_controller_labels_info" $join) }}
{{- end }}
{{- list $instance | toJson }}
{{- end }}

{{/* Annotations of the pods: Datadog Autodiscovery (container wpa) and podAnnotations. */}}
{{- define "wpa.podAnnotations" -}}
{{- if .Values.datadog.autodiscovery.enabled }}
ad.datadoghq.com/wpa.check_names: '["prometheus"]'
ad.datadoghq.com/wpa.init_configs: '[{}]'
ad.datadoghq.com/wpa.instances: {{ include "wpa.datadogInstances" . | squote }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Upstream's keys this release sets, with the key to prefer (one line each, for NOTES.txt). */}}
{{- define "wpa.upstreamKeys" -}}
{{- if not (kindIs "invalid" .Values.watchAllNamespaces) }}
  watchAllNamespaces={{ .Values.watchAllNamespaces }}: {{ if .Values.watchAllNamespaces }}every namespace{{ else }}only {{ .Release.Namespace }}{{ end }}; prefer watchNamespaces ([] for all, or the list)
{{- end }}
{{- with .Values.labelsAsTags }}
  labelsAsTags={{ join "," . }}: prefer reconciler.labelsAsTags (the same keys)
{{- end }}
{{- if not (kindIs "invalid" .Values.lifecycleControl.enabled) }}
  lifecycleControl.enabled={{ .Values.lifecycleControl.enabled }}: no effect; wpa reads the DatadogMonitor of every WPA annotated wpa.datadoghq.com/lifecycle-control.enabled (remove the key)
{{- end }}
{{- $crds := .Values.datadogCRDs.crds | default dict }}
{{- if not (kindIs "invalid" $crds.datadogMonitors) }}
  datadogCRDs.crds.datadogMonitors={{ $crds.datadogMonitors }}: no effect; install the DatadogMonitor CRD with the Datadog Operator or Datadog's datadog-crds chart (remove the key)
{{- end }}
{{- /* The subchart's other values (crds.datadogMetrics, nameOverride, ...): upstream's chart passes them on. */}}
{{- $other := list }}
{{- range $k := keys (omit $crds "datadogMonitors") | sortAlpha }}{{ $other = append $other (printf "crds.%s" $k) }}{{ end }}
{{- range $k := keys (omit .Values.datadogCRDs "crds") | sortAlpha }}{{ $other = append $other $k }}{{ end }}
{{- with $other }}
  datadogCRDs.{{ join ", datadogCRDs." . }}: no effect; these are values of upstream's datadog-crds subchart, which this chart does not install (remove the keys)
{{- end }}
{{- if not (kindIs "invalid" .Values.leaderElectionResourceLock) }}
  leaderElectionResourceLock={{ .Values.leaderElectionResourceLock }}: no effect; wpa elects its leader on Lease {{ .Values.leaderElection.leaseName }} (leaderElection.*)
{{- end }}
{{- end }}
