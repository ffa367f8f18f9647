{{/* The release's full name, the prefix of every object: "<release>" when the
release name already contains the chart's name, else "<release>-patchbay". */}}
{{- define "patchbay.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "patchbay.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "patchbay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels that select the manager's pods. */}}
{{- define "patchbay.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: manager
{{- end -}}

{{/* The manager's ServiceAccount. */}}
{{- define "patchbay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "patchbay.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image joins a repository and a tag that defaults to the chart's appVersion. */}}
{{- define "patchbay.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* natsImage is the --nats-image: natsImage is either one string or a
repository and a tag. */}}
{{- define "patchbay.natsImage" -}}
{{- $img := .Values.natsImage -}}
{{- if kindIs "string" $img -}}
{{- required "natsImage is required" $img -}}
{{- else -}}
{{- printf "%s:%s" (required "natsImage.repository is required" $img.repository) (required "natsImage.tag is required" $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* The labels of the pods the manager deploys (internal/render/meta.go). */}}
{{- define "patchbay.runtimePodLabels" -}}
app.kubernetes.io/name: patchbay
app.kubernetes.io/managed-by: patchbay
{{- end -}}
