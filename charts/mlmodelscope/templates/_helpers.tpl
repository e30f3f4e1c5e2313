{{/* Names, labels and shared fragments of the MLModelScope chart. */}}

{{- define "mlmodelscope.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mlmodelscope.component" -}}
{{- printf "%s-%s" (include "mlmodelscope.fullname" .root) .name -}}
{{- end -}}

{{- define "mlmodelscope.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "mlmodelscope.labels" -}}
{{ include "mlmodelscope.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: mlmodelscope
{{- end -}}

{{/* The image of a component: its full override, else registry/<name>:<tag or appVersion>. */}}
{{- define "mlmodelscope.image" -}}
{{- if .override -}}
{{- .override -}}
{{- else -}}
{{- printf "%s/%s:%s" .root.Values.image.registry .name (default .root.Chart.AppVersion .root.Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "mlmodelscope.natsUrl" -}}
{{- if .Values.nats.enabled -}}
{{- printf "nats://%s.%s.svc:4222" (include "mlmodelscope.component" (dict "root" . "name" "nats")) .Release.Namespace -}}
{{- else -}}
{{- required "nats.externalUrl is required when nats.enabled is false" .Values.nats.externalUrl -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the NATS token (key `token`), or "" when NATS needs none. */}}
{{- define "mlmodelscope.natsTokenSecret" -}}
{{- $auth := .Values.nats.auth -}}
{{- if $auth.existingSecret -}}
{{- $auth.existingSecret -}}
{{- else if and .Values.nats.enabled $auth.enabled -}}
{{- include "mlmodelscope.component" (dict "root" . "name" "nats-auth") -}}
{{- end -}}
{{- end -}}

{{/* MLMODELSCOPE_NATS_TOKEN from that Secret, under the environment variable name given as .env. */}}
{{- define "mlmodelscope.natsTokenEnv" -}}
{{- $secret := include "mlmodelscope.natsTokenSecret" .root -}}
{{- if $secret }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: token}
{{- end }}
{{- end -}}

{{- define "mlmodelscope.collectorUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "mlmodelscope.component" (dict "root" . "name" "collector")) .Release.Namespace (int .Values.collector.port) -}}
{{- end -}}

{{/* Pod-level security context: non-root, RuntimeDefault seccomp. */}}
{{- define "mlmodelscope.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsUser }}
fsGroup: {{ .Values.podSecurity.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container-level security context: read-only root, no escalation, every capability dropped. */}}
{{- define "mlmodelscope.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "mlmodelscope.volumeClaim" -}}
{{- if .persistence.enabled }}
persistentVolumeClaim:
  claimName: {{ .claim }}
{{- else }}
emptyDir: {}
{{- end }}
{{- end -}}

{{/* Namespaces where Evaluations run and their Jobs live: the watched ones, else the release namespace. */}}
{{- define "mlmodelscope.evaluationNamespaces" -}}
{{- if .Values.operator.watchNamespaces -}}
{{- toJson (uniq .Values.operator.watchNamespaces) -}}
{{- else -}}
{{- toJson (list .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{/* MLMODELSCOPE_S3_* of the object store (bundled MinIO or external), for s3:// artifact URIs. */}}
{{- define "mlmodelscope.s3Env" -}}
{{- $os := .Values.objectStore -}}
{{- if $os.minio.enabled -}}
{{- $secret := default (include "mlmodelscope.component" (dict "root" . "name" "minio")) $os.minio.existingSecret -}}
- {name: MLMODELSCOPE_S3_ENDPOINT, value: {{ printf "%s:9000" (include "mlmodelscope.component" (dict "root" . "name" "minio")) | quote }}}
- {name: MLMODELSCOPE_S3_SECURE, value: "false"}
- name: MLMODELSCOPE_S3_ACCESS_KEY
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: accessKey}}
- name: MLMODELSCOPE_S3_SECRET_KEY
  valueFrom: {secretKeyRef: {name: {{ $secret }}, key: secretKey}}
{{- else if $os.external.endpoint -}}
- {name: MLMODELSCOPE_S3_ENDPOINT, value: {{ $os.external.endpoint | quote }}}
- {name: MLMODELSCOPE_S3_SECURE, value: {{ $os.external.secure | quote }}}
{{- if $os.external.existingSecret }}
- name: MLMODELSCOPE_S3_ACCESS_KEY
  valueFrom: {secretKeyRef: {name: {{ $os.external.existingSecret }}, key: accessKey}}
- name: MLMODELSCOPE_S3_SECRET_KEY
  valueFrom: {secretKeyRef: {name: {{ $os.external.existingSecret }}, key: secretKey}}
{{- end }}
{{- end -}}
{{- end -}}

{{/* imagePullSecrets of a pod the chart runs (image.pullSecrets, by name); nothing when there are none. */}}
{{- define "mlmodelscope.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The image of a built-in Framework's container with image.registry and image.tag applied: the repository's last
path element is kept (agent-onnxruntime), the registry replaced, and the tag's version replaced by image.tag while
its suffix (-cuda) stays; an empty image.tag keeps the resource's version. .image is the resource's reference.
*/}}
{{- define "mlmodelscope.builtinAgentImage" -}}
{{- $reference := .image -}}
{{- $tag := "" -}}
{{- $lastSlash := regexFind "[^/]+$" $reference -}}
{{- if contains ":" $lastSlash -}}
{{- $tag = regexFind "[^:]+$" $lastSlash -}}
{{- end -}}
{{- $repository := trimSuffix (printf ":%s" $tag) $lastSlash -}}
{{- $version := .root.Values.image.tag -}}
{{- if $version -}}
{{- $tag = printf "%s%s" $version (regexReplaceAll "^[0-9][0-9A-Za-z.]*" $tag "") -}}
{{- end -}}
{{- printf "%s/%s:%s" .root.Values.image.registry $repository $tag -}}
{{- end -}}

{{/* The agents' ServiceAccount (in every namespace where Evaluations run; its token is never mounted). */}}
{{- define "mlmodelscope.agentServiceAccount" -}}
{{- include "mlmodelscope.component" (dict "root" . "name" "agent") -}}
{{- end -}}

{{/* The PersistentVolumeClaim the agents share as artifact cache, or "" when they each get an emptyDir. */}}
{{- define "mlmodelscope.artifactCacheClaim" -}}
{{- $cache := .Values.agents.artifactCache -}}
{{- if $cache.enabled -}}
{{- default (include "mlmodelscope.component" (dict "root" . "name" "artifact-cache")) $cache.existingClaim -}}
{{- end -}}
{{- end -}}

{{/*
The object store the agents fetch s3:// artifacts from, as JSON {secret, url, host, port, minio}: the bundled MinIO
(its Secret copied into every namespace where Evaluations run), else objectStore.external; {} when there is none.
*/}}
{{- define "mlmodelscope.agentObjectStore" -}}
{{- $os := .Values.objectStore -}}
{{- if $os.minio.enabled -}}
{{- $name := include "mlmodelscope.component" (dict "root" . "name" "minio") -}}
{{- toJson (dict "secret" (default $name $os.minio.existingSecret) "url" (printf "http://%s.%s.svc:9000" $name .Release.Namespace) "port" 9000 "minio" true) -}}
{{- else if $os.external.endpoint -}}
{{- $host := regexReplaceAll ":[0-9]+$" $os.external.endpoint "" -}}
{{- $port := ternary 443 80 $os.external.secure -}}
{{- if regexMatch ":[0-9]+$" $os.external.endpoint -}}
{{- $port = regexFind "[0-9]+$" $os.external.endpoint | int -}}
{{- end -}}
{{- toJson (dict "secret" $os.external.existingSecret "url" (printf "%s://%s" (ternary "https" "http" $os.external.secure) $os.external.endpoint) "host" $host "port" $port "minio" false) -}}
{{- else -}}
{{- toJson dict -}}
{{- end -}}
{{- end -}}
