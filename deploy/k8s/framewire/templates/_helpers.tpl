{{/* Names, labels and the pieces every framewire pod shares. */}}

{{- define "framewire.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "framewire.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "framewire.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "framewire.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: dict "root" $ "component" "ingest". */}}
{{- define "framewire.selectorLabels" -}}
app.kubernetes.io/name: {{ include "framewire.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "framewire.componentLabels" -}}
{{ include "framewire.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The component devices connect to: ingest in split mode, serve in single mode. */}}
{{- define "framewire.frontComponent" -}}
{{- if eq .Values.mode "single" -}}serve{{- else -}}ingest{{- end -}}
{{- end -}}

{{- define "framewire.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "framewire.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* image reference: dict "root" $ "image" .Values.image.server */}}
{{- define "framewire.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* The headless Service ingest resolves every inference pod through. */}}
{{- define "framewire.inferenceTarget" -}}
{{- printf "dns:///%s-inference.%s.svc.cluster.local:%d" (include "framewire.fullname" .) .Release.Namespace (int .Values.ports.grpc) -}}
{{- end -}}

{{- define "framewire.terminationGracePeriodSeconds" -}}
{{- add .Values.lifecycle.preStopSleepSeconds .Values.lifecycle.shutdownGraceSeconds .Values.lifecycle.terminationMarginSeconds -}}
{{- end -}}

{{/* The port the kubelet's gRPC probes use. */}}
{{- define "framewire.probePort" -}}
{{- if .Values.probes.healthPort -}}health{{- else -}}grpc{{- end -}}
{{- end -}}

{{/*
Flags every server gets, then its own settings map as --kebab-case=value flags.
dict "root" $ "settings" .Values.ingest.settings
*/}}
{{- define "framewire.serverArgs" -}}
{{- $v := .root.Values -}}
- --host=0.0.0.0
- --port={{ $v.ports.grpc }}
- --metrics-host=0.0.0.0
- --metrics-port={{ $v.ports.metrics }}
- --shutdown-grace={{ $v.lifecycle.shutdownGraceSeconds }}
- --max-connection-age={{ $v.lifecycle.maxConnectionAgeSeconds }}
- --max-connection-age-grace={{ $v.lifecycle.maxConnectionAgeGraceSeconds }}
- --log-format={{ $v.logFormat }}
- --log-level={{ $v.logLevel }}
{{- if $v.probes.healthPort }}
- --health-port={{ $v.probes.healthPort }}
{{- end }}
{{- if $v.reflection }}
- --reflection
{{- end }}
{{- range $key, $value := .settings }}
{{- if kindIs "bool" $value }}
- --{{ if not $value }}no-{{ end }}{{ kebabcase $key }}
{{- else }}
- {{ printf "--%s=%v" (kebabcase $key) $value | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "framewire.ports" -}}
- name: grpc
  containerPort: {{ .Values.ports.grpc }}
  protocol: TCP
- name: metrics
  containerPort: {{ .Values.ports.metrics }}
  protocol: TCP
{{- if .Values.probes.healthPort }}
- name: health
  containerPort: {{ .Values.probes.healthPort }}
  protocol: TCP
{{- end }}
{{- end -}}

{{/* Liveness, readiness and startup probes: dict "root" $ "startup" .Values.probes.startup */}}
{{- define "framewire.probes" -}}
{{- $v := .root.Values -}}
{{- $port := include "framewire.probePort" .root -}}
{{- $portNumber := ternary $v.probes.healthPort $v.ports.grpc (not (empty $v.probes.healthPort)) -}}
startupProbe:
  grpc:
    port: {{ $portNumber }}
  periodSeconds: {{ .startup.periodSeconds }}
  timeoutSeconds: {{ .startup.timeoutSeconds }}
  failureThreshold: {{ .startup.failureThreshold }}
livenessProbe:
  grpc:
    port: {{ $portNumber }}
  periodSeconds: {{ $v.probes.liveness.periodSeconds }}
  timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
  failureThreshold: {{ $v.probes.liveness.failureThreshold }}
readinessProbe:
  grpc:
    port: {{ $portNumber }}
  periodSeconds: {{ $v.probes.readiness.periodSeconds }}
  timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
  failureThreshold: {{ $v.probes.readiness.failureThreshold }}
lifecycle:
  preStop:
    exec:
      command: ["sleep", "{{ $v.lifecycle.preStopSleepSeconds }}"]
{{- end -}}

{{/* Pod-level fields shared by every Deployment: dict "root" $ "component" .Values.ingest */}}
{{- define "framewire.podCommon" -}}
{{- $v := .root.Values -}}
serviceAccountName: {{ include "framewire.serviceAccountName" .root }}
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ include "framewire.terminationGracePeriodSeconds" .root }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Inference's resources, with the GPU limit added when GPUs are on. */}}
{{- define "framewire.inferenceResources" -}}
{{- $v := .Values.inference -}}
{{- $resources := deepCopy $v.resources -}}
{{- if $v.gpu.enabled -}}
{{- $limits := deepCopy (default (dict) $resources.limits) -}}
{{- $_ := set $limits $v.gpu.resourceName $v.gpu.count -}}
{{- $_ := set $resources "limits" $limits -}}
{{- end -}}
{{- toYaml $resources -}}
{{- end -}}

{{/* Checks across values that the schema cannot express. */}}
{{- define "framewire.validate" -}}
{{- $l := .Values.lifecycle -}}
{{- $live := .Values.probes.liveness -}}
{{- if le (mul $live.periodSeconds $live.failureThreshold) (add $l.preStopSleepSeconds $l.shutdownGraceSeconds) -}}
{{- fail (printf "probes.liveness: periodSeconds x failureThreshold (%d s) must exceed lifecycle.preStopSleepSeconds + shutdownGraceSeconds (%d s): health reports NOT_SERVING while a server drains, and the kubelet must not restart it then" (mul $live.periodSeconds $live.failureThreshold) (add $l.preStopSleepSeconds $l.shutdownGraceSeconds)) -}}
{{- end -}}
{{- if and .Values.probes.healthPort (or (eq (int .Values.probes.healthPort) (int .Values.ports.grpc)) (eq (int .Values.probes.healthPort) (int .Values.ports.metrics))) -}}
{{- fail "probes.healthPort must differ from ports.grpc and ports.metrics" -}}
{{- end -}}
{{- end -}}
