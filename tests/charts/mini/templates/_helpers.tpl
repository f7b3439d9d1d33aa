{{- define "mini.fullname" -}}{{ .Release.Name }}-mini{{- end }}

{{- define "mini.selectorLabels" -}}
app.kubernetes.io/name: mini
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
