{{- define "pf.name" -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}{{- end -}}

{{- define "pf.labels" -}}
app.kubernetes.io/name: practiceflow
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
practiceflow.io/region: {{ .Values.region | quote }}
{{- end -}}

{{- define "pf.selector" -}}
app.kubernetes.io/name: practiceflow
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "pf.image" -}}{{ printf "%s:%s" .Values.image.repository .Values.image.tag }}{{- end -}}

{{/* Endpoints: in-cluster services when inCluster.enabled, else the external ones. */}}
{{- define "pf.endpointEnv" -}}
{{- $n := include "pf.name" . -}}
- name: PRACTICEFLOW_KAFKA_BOOTSTRAP
  value: {{ ternary (printf "%s-kafka:9092" $n) .Values.kafka.bootstrap .Values.inCluster.enabled | quote }}
- name: PRACTICEFLOW_SCHEMA_REGISTRY_URL
  value: {{ ternary (printf "http://%s-registry:8080/apis/ccompat/v7" $n) .Values.schemaRegistry.url .Values.inCluster.enabled | quote }}
- name: PRACTICEFLOW_CLICKHOUSE_DSN
  value: {{ ternary (printf "http://%s-clickhouse:8123" $n) .Values.clickhouse.dsn .Values.inCluster.enabled | quote }}
- name: PRACTICEFLOW_CLICKHOUSE_DATABASE
  value: {{ .Values.clickhouse.database | quote }}
- name: PRACTICEFLOW_TOPIC_PARTITIONS
  value: {{ .Values.kafka.topicPartitions | quote }}
- name: PRACTICEFLOW_TOPIC_REPLICATION
  value: {{ ternary 1 .Values.kafka.topicReplication .Values.inCluster.enabled | quote }}
- name: PRACTICEFLOW_STATE_DIR
  value: /var/lib/practiceflow
{{- if .Values.vllm.enabled }}
- name: PRACTICEFLOW_LLM__BASE_URL
  value: {{ printf "http://%s-vllm:%d/v1" $n (int .Values.vllm.port) | quote }}
- name: PRACTICEFLOW_LLM__MODEL
  value: {{ .Values.vllm.servedModelName | quote }}
{{- end }}
{{- range $k, $v := .Values.settings }}
- name: {{ printf "PRACTICEFLOW_%s" (upper $k) }}
  value: {{ ternary ($v | toJson) ($v | toString) (or (kindIs "map" $v) (kindIs "slice" $v)) | quote }}
{{- end }}
{{- end -}}

{{- define "pf.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}

{{- define "pf.egressDeps" -}}
{{- /* egress to Kafka, the registry and ClickHouse (in-cluster pods or external CIDRs) + DNS */ -}}
{{- $root := .root -}}
- to:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: {{ $root.Values.networkPolicy.dnsNamespace }}}}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- if $root.Values.inCluster.enabled }}
- to:
    - podSelector: {matchLabels: {app.kubernetes.io/instance: {{ $root.Release.Name }}, practiceflow.io/role: dependency}}
  ports:
    - {protocol: TCP, port: 9092}
    - {protocol: TCP, port: 8080}
    - {protocol: TCP, port: 8123}
{{- else }}
{{- range $dep := .deps }}
{{- range $e := index $root.Values.external $dep }}
- to:
    - ipBlock: {cidr: {{ $e.cidr }}}
  ports:
    - {protocol: TCP, port: {{ $e.port }}}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}
