{{/*
Names. Kubernetes limits names to 63 characters; StatefulSet names to 52 so
that the controller-revision-hash label (name + "-" + 10 characters) fits.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "ftp-pooler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release-qualified name every object name starts with. */}}
{{- define "ftp-pooler.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "ftp-pooler.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The dispatcher StatefulSet (at most 52 characters). */}}
{{- define "ftp-pooler.dispatcher.fullname" -}}
{{- printf "%s-dispatcher" (include "ftp-pooler.fullname" . | trunc 41 | trimSuffix "-") -}}
{{- end -}}

{{/* The headless Service that gives each dispatcher a DNS name for the agents. */}}
{{- define "ftp-pooler.dispatcher.headlessName" -}}
{{- printf "%s-headless" (include "ftp-pooler.dispatcher.fullname" .) -}}
{{- end -}}

{{/* The admin API Service. */}}
{{- define "ftp-pooler.dispatcher.adminName" -}}
{{- printf "%s-admin" (include "ftp-pooler.dispatcher.fullname" .) -}}
{{- end -}}

{{/* The agent Deployment and Service. */}}
{{- define "ftp-pooler.agent.fullname" -}}
{{- printf "%s-agent" (include "ftp-pooler.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{- define "ftp-pooler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ftp-pooler.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "ftp-pooler.labels" -}}
helm.sh/chart: {{ include "ftp-pooler.chart" . }}
{{ include "ftp-pooler.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ftp-pooler
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels that select the release's pods; never change them in an upgrade. */}}
{{- define "ftp-pooler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ftp-pooler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ftp-pooler.dispatcher.labels" -}}
{{ include "ftp-pooler.labels" . }}
app.kubernetes.io/component: dispatcher
{{- end -}}

{{- define "ftp-pooler.dispatcher.selectorLabels" -}}
{{ include "ftp-pooler.selectorLabels" . }}
app.kubernetes.io/component: dispatcher
{{- end -}}

{{- define "ftp-pooler.agent.labels" -}}
{{ include "ftp-pooler.labels" . }}
app.kubernetes.io/component: agent
{{- end -}}

{{- define "ftp-pooler.agent.selectorLabels" -}}
{{ include "ftp-pooler.selectorLabels" . }}
app.kubernetes.io/component: agent
{{- end -}}

{{/* The label admin API clients carry so that the NetworkPolicy lets them in. */}}
{{- define "ftp-pooler.adminClientLabel" -}}
{{ include "ftp-pooler.fullname" . | trunc 50 | trimSuffix "-" }}-admin-client: "true"
{{- end -}}

{{/* An image reference from {repository, tag, digest}; the tag defaults to appVersion. */}}
{{- define "ftp-pooler.image" -}}
{{- $img := .image -}}
{{- $ref := printf "%s:%s" $img.repository (default .root.Chart.AppVersion $img.tag) -}}
{{- if $img.digest -}}
{{- $ref = printf "%s@%s" $ref $img.digest -}}
{{- end -}}
{{- $ref -}}
{{- end -}}

{{/*
File locations inside the containers. The chart's config.yaml and
connections.ini name these paths, and the pods mount the matching volumes.
*/}}
{{- define "ftp-pooler.path.config" -}}/etc/ftp-pooler/config{{- end -}}
{{- define "ftp-pooler.path.connections" -}}/etc/ftp-pooler/connections{{- end -}}
{{- define "ftp-pooler.path.ftpPasswords" -}}/etc/ftp-pooler/ftp-passwords{{- end -}}
{{- define "ftp-pooler.path.ftpsCA" -}}/etc/ftp-pooler/ftps-ca{{- end -}}
{{- define "ftp-pooler.path.sftpKeys" -}}/etc/ftp-pooler/sftp-keys{{- end -}}
{{- define "ftp-pooler.path.tls" -}}/etc/ftp-pooler/tls{{- end -}}
{{- define "ftp-pooler.path.adminTLS" -}}/etc/ftp-pooler/admin-tls{{- end -}}
{{- define "ftp-pooler.path.adminClientTLS" -}}/etc/ftp-pooler/admin-client-tls{{- end -}}
{{- define "ftp-pooler.path.adminToken" -}}/etc/ftp-pooler/admin-token{{- end -}}
{{- define "ftp-pooler.path.kafkaTLS" -}}/etc/ftp-pooler/kafka-tls{{- end -}}

{{/*
The dispatcher addresses every agent connects to: one per StatefulSet
replica, through the headless Service, on the lease port.
*/}}
{{- define "ftp-pooler.dispatcherAddresses" -}}
{{- $sts := include "ftp-pooler.dispatcher.fullname" . -}}
{{- $svc := include "ftp-pooler.dispatcher.headlessName" . -}}
{{- $addrs := list -}}
{{- range $i := until (int .Values.dispatcher.replicas) -}}
{{- $addrs = append $addrs (printf "%s-%d.%s.%s.svc:%d" $sts $i $svc $.Release.Namespace (int $.Values.dispatcher.ports.lease)) -}}
{{- end -}}
{{- join "," $addrs -}}
{{- end -}}

{{/* Secret names for the TLS material, from an existing Secret or cert-manager. */}}
{{- define "ftp-pooler.tls.dispatcherSecret" -}}
{{- if .Values.tls.certManager -}}{{ include "ftp-pooler.dispatcher.fullname" . }}-tls{{- else -}}{{ .Values.tls.dispatcher.existingSecret }}{{- end -}}
{{- end -}}
{{- define "ftp-pooler.tls.agentSecret" -}}
{{- if .Values.tls.certManager -}}{{ include "ftp-pooler.agent.fullname" . }}-tls{{- else -}}{{ .Values.tls.agent.existingSecret }}{{- end -}}
{{- end -}}
{{- define "ftp-pooler.adminTLS.secret" -}}
{{- if .Values.dispatcher.admin.tls.certManager -}}{{ include "ftp-pooler.dispatcher.fullname" . }}-admin-tls{{- else -}}{{ .Values.dispatcher.admin.tls.existingSecret }}{{- end -}}
{{- end -}}
{{- define "ftp-pooler.adminTLS.clientSecret" -}}
{{- if .Values.dispatcher.admin.tls.certManager -}}{{ include "ftp-pooler.dispatcher.fullname" . }}-admin-client-tls{{- else -}}{{ .Values.dispatcher.admin.tls.clientExistingSecret }}{{- end -}}
{{- end -}}
{{- define "ftp-pooler.adminToken.secret" -}}
{{- if .Values.dispatcher.admin.token.existingSecret -}}{{ .Values.dispatcher.admin.token.existingSecret }}{{- else -}}{{ include "ftp-pooler.dispatcher.fullname" . }}-admin-token{{- end -}}
{{- end -}}
{{- define "ftp-pooler.adminToken.key" -}}
{{- if .Values.dispatcher.admin.token.existingSecret -}}{{ .Values.dispatcher.admin.token.existingSecretKey }}{{- else -}}token{{- end -}}
{{- end -}}
{{- define "ftp-pooler.connections.secret" -}}
{{- default (printf "%s-connections" (include "ftp-pooler.fullname" .)) .Values.connections.existingSecret -}}
{{- end -}}
{{- define "ftp-pooler.connections.key" -}}
{{- if .Values.connections.existingSecret -}}{{ .Values.connections.existingSecretKey }}{{- else -}}connections.ini{{- end -}}
{{- end -}}

{{/*
Validation that the values schema cannot express. Included once, from the
ConfigMap, so a bad combination fails the whole render with a clear message.
*/}}
{{- define "ftp-pooler.validate" -}}
{{- $v := .Values -}}
{{- if and $v.tls.enabled (not $v.tls.certManager) -}}
{{- if not $v.tls.dispatcher.existingSecret -}}
{{- fail "tls.enabled: set tls.certManager=true, or tls.dispatcher.existingSecret (and tls.agent.existingSecret with tls.mutual)" -}}
{{- end -}}
{{- if and $v.tls.mutual (not $v.tls.agent.existingSecret) -}}
{{- fail "tls.mutual: agents need a client certificate: set tls.agent.existingSecret (or tls.certManager=true)" -}}
{{- end -}}
{{- end -}}
{{- if and (or $v.tls.certManager $v.dispatcher.admin.tls.certManager) (not $v.certManager.issuerRef.name) -}}
{{- fail "certManager.issuerRef.name is required when tls.certManager or dispatcher.admin.tls.certManager is true" -}}
{{- end -}}
{{- with $v.dispatcher.admin.tls -}}
{{- if and .enabled (not .certManager) (not .existingSecret) -}}
{{- fail "dispatcher.admin.tls.enabled: set dispatcher.admin.tls.certManager=true or dispatcher.admin.tls.existingSecret" -}}
{{- end -}}
{{- end -}}
{{- with $v.dispatcher.admin.token -}}
{{- if and .enabled (not .existingSecret) (not .value) -}}
{{- fail "dispatcher.admin.token.enabled: set dispatcher.admin.token.value or dispatcher.admin.token.existingSecret" -}}
{{- end -}}
{{- if and .value .existingSecret -}}
{{- fail "dispatcher.admin.token: set value or existingSecret, not both" -}}
{{- end -}}
{{- end -}}
{{- with $v.kafkaSecurity.sasl -}}
{{- if and .enabled (or (not .username) (not .password)) -}}
{{- fail "kafkaSecurity.sasl.enabled: kafkaSecurity.sasl.username and kafkaSecurity.sasl.password are required" -}}
{{- end -}}
{{- end -}}
{{- with $v.kafkaSecurity.tls -}}
{{- if and .enabled (or .caKey .certKey) (not .existingSecret) -}}
{{- fail "kafkaSecurity.tls: caKey/certKey name keys of kafkaSecurity.tls.existingSecret, which is empty (clear caKey to trust the system CAs)" -}}
{{- end -}}
{{- if ne (empty .certKey) (empty .keyKey) -}}
{{- fail "kafkaSecurity.tls: certKey and keyKey go together (a client certificate and its key)" -}}
{{- end -}}
{{- end -}}
{{- if and $v.dispatcher.admin.tls.mutual (not $v.dispatcher.admin.tls.enabled) -}}
{{- fail "dispatcher.admin.tls.mutual needs dispatcher.admin.tls.enabled" -}}
{{- end -}}
{{- $managed := list "security.protocol" "ssl.ca.location" "ssl.certificate.location" "ssl.key.location" "sasl.mechanisms" "sasl.mechanism" "sasl.username" "sasl.password" -}}
{{- range $k, $_ := $v.config.kafka.client -}}
{{- if and (has $k $managed) (or $v.kafkaSecurity.tls.enabled $v.kafkaSecurity.sasl.enabled) -}}
{{- fail (printf "config.kafka.client[%s] is set by kafkaSecurity.tls/sasl; remove it from config.kafka.client" $k) -}}
{{- end -}}
{{- end -}}
{{- if not $v.connections.existingSecret -}}
{{- if not $v.connections.endpoints -}}
{{- fail "connections: define at least one endpoint in connections.endpoints, or name a Secret holding connections.ini in connections.existingSecret" -}}
{{- end -}}
{{- range $id, $ep := $v.connections.endpoints -}}
{{- if eq $ep.type "local" -}}
{{- $covered := false -}}
{{- range $v.storage.volumes -}}
{{- if or (eq (clean $ep.basePath) (clean .mountPath)) (hasPrefix (printf "%s/" (clean .mountPath | trimSuffix "/")) (clean $ep.basePath)) -}}
{{- $covered = true -}}
{{- end -}}
{{- end -}}
{{- if not $covered -}}
{{- fail (printf "connections.endpoints.%s: base_path %s is on no volume; add a storage.volumes entry whose mountPath is %s or a parent of it" $id $ep.basePath $ep.basePath) -}}
{{- end -}}
{{- else -}}
{{- if and $ep.password $ep.passwordSecret -}}
{{- fail (printf "connections.endpoints.%s: set password or passwordSecret, not both" $id) -}}
{{- end -}}
{{- if and $ep.tlsCaSecret (ne (default "none" $ep.tls) "explicit") (ne (default "none" $ep.tls) "implicit") -}}
{{- fail (printf "connections.endpoints.%s: tlsCaSecret needs tls: explicit or implicit" $id) -}}
{{- end -}}
{{- if eq $ep.type "sftp" -}}
{{- if not $ep.host -}}
{{- fail (printf "connections.endpoints.%s: an sftp endpoint needs host" $id) -}}
{{- end -}}
{{- if not $ep.user -}}
{{- fail (printf "connections.endpoints.%s: an sftp endpoint needs user" $id) -}}
{{- end -}}
{{- if not (or $ep.password $ep.passwordSecret $ep.privateKeySecret) -}}
{{- fail (printf "connections.endpoints.%s: an sftp endpoint needs password, passwordSecret or privateKeySecret (a private key; both may be set)" $id) -}}
{{- end -}}
{{- if and $ep.privateKeyPassphraseSecret (not $ep.privateKeySecret) -}}
{{- fail (printf "connections.endpoints.%s: privateKeyPassphraseSecret is set but privateKeySecret is not" $id) -}}
{{- end -}}
{{- if not (or $ep.knownHostsSecret $ep.hostKeyFingerprint $ep.insecureIgnoreHostKey) -}}
{{- fail (printf "connections.endpoints.%s: an sftp endpoint needs the server's host key: set knownHostsSecret {name, key} (an OpenSSH known_hosts file; non-default ports as [host]:port) or hostKeyFingerprint (SHA256:..., as `ssh-keyscan -p PORT HOST | ssh-keygen -lf -` prints it; check it with the server's administrator); insecureIgnoreHostKey: true skips the check (test servers only)" $id) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $mounts := list -}}
{{- range $v.storage.volumes -}}
{{- if has .mountPath $mounts -}}
{{- fail (printf "storage.volumes: mountPath %s is used twice" .mountPath) -}}
{{- end -}}
{{- $mounts = append $mounts .mountPath -}}
{{- end -}}
{{- if $v.agent.autoscaling.enabled -}}
{{- if lt (int $v.agent.autoscaling.maxReplicas) (int $v.agent.autoscaling.minReplicas) -}}
{{- fail "agent.autoscaling.maxReplicas must be at least agent.autoscaling.minReplicas" -}}
{{- end -}}
{{- if and (not $v.agent.autoscaling.targetCPUUtilizationPercentage) (not $v.agent.autoscaling.targetMemoryUtilizationPercentage) -}}
{{- fail "agent.autoscaling: set targetCPUUtilizationPercentage and/or targetMemoryUtilizationPercentage" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Is any kafka.client key a credential? Then config.yaml with it goes into a Secret. */}}
{{- define "ftp-pooler.kafkaClientSensitive" -}}
{{- $sensitive := false -}}
{{- range $k, $_ := .Values.config.kafka.client -}}
{{- if regexMatch "(?i)(password|secret|oauthbearer\\.config|jaas)" $k -}}
{{- $sensitive = true -}}
{{- end -}}
{{- end -}}
{{- if or $sensitive .Values.kafkaSecurity.sasl.enabled -}}true{{- end -}}
{{- end -}}

{{/*
config.yaml. With "public" true, kafka.client credentials are left out: that
version goes into the ConfigMap, which agents mount (agents never talk to
Kafka). The full version goes into a Secret for the dispatchers when it holds
credentials, and is the ConfigMap's otherwise.
Arguments: dict "root" $ "public" bool.
*/}}
{{- define "ftp-pooler.configYaml" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $c := $v.config -}}
{{- $client := dict -}}
{{- range $k, $val := $c.kafka.client -}}
{{- if not (and $.public (regexMatch "(?i)(password|secret|oauthbearer\\.config|jaas)" $k)) -}}
{{- $_ := set $client $k (toString $val) -}}
{{- end -}}
{{- end -}}
{{- $tlsOn := $v.kafkaSecurity.tls.enabled -}}
{{- $saslOn := $v.kafkaSecurity.sasl.enabled -}}
{{- if or $tlsOn $saslOn -}}
{{- $_ := set $client "security.protocol" (ternary (ternary "SASL_SSL" "SSL" $saslOn) "SASL_PLAINTEXT" $tlsOn) -}}
{{- end -}}
{{- if $tlsOn -}}
{{- with $v.kafkaSecurity.tls -}}
{{- if .caKey -}}
{{- $_ := set $client "ssl.ca.location" (printf "%s/%s" (include "ftp-pooler.path.kafkaTLS" $root) .caKey) -}}
{{- end -}}
{{- if .certKey -}}
{{- $_ := set $client "ssl.certificate.location" (printf "%s/%s" (include "ftp-pooler.path.kafkaTLS" $root) .certKey) -}}
{{- $_ := set $client "ssl.key.location" (printf "%s/%s" (include "ftp-pooler.path.kafkaTLS" $root) .keyKey) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $saslOn -}}
{{- $_ := set $client "sasl.mechanisms" $v.kafkaSecurity.sasl.mechanism -}}
{{- $_ := set $client "sasl.username" $v.kafkaSecurity.sasl.username -}}
{{- if not .public -}}
{{- $_ := set $client "sasl.password" $v.kafkaSecurity.sasl.password -}}
{{- end -}}
{{- end -}}
{{- $kafka := omit $c.kafka "client" -}}
{{- if $client -}}
{{- $_ := set $kafka "client" $client -}}
{{- end -}}
{{- $http := int $v.dispatcher.ports.http -}}
{{- $dispatcher := dict "drain_timeout" (printf "%ds" (int $v.dispatcher.drainTimeoutSeconds)) -}}
{{- $agent := dict "drain_timeout" (printf "%ds" (int $v.agent.drainTimeoutSeconds)) "reconnect_max_backoff" $v.agent.reconnectMaxBackoff -}}
{{- if $v.tls.enabled -}}
{{- $p := include "ftp-pooler.path.tls" $root -}}
{{- $dtls := dict "cert_file" (printf "%s/tls.crt" $p) "key_file" (printf "%s/tls.key" $p) -}}
{{- $atls := dict "ca_file" (printf "%s/%s" $p $v.tls.caKey) -}}
{{- if $v.tls.mutual -}}
{{- $_ := set $dtls "client_ca_file" (printf "%s/%s" $p $v.tls.caKey) -}}
{{- $_ := set $atls "cert_file" (printf "%s/tls.crt" $p) -}}
{{- $_ := set $atls "key_file" (printf "%s/tls.key" $p) -}}
{{- end -}}
{{- with $v.tls.serverName -}}
{{- $_ := set $atls "server_name" . -}}
{{- end -}}
{{- $_ := set $dispatcher "tls" $dtls -}}
{{- $_ := set $agent "tls" $atls -}}
{{- end -}}
{{- $admin := dict -}}
{{- if $v.dispatcher.admin.token.enabled -}}
{{- $_ := set $admin "token_file" (printf "%s/token" (include "ftp-pooler.path.adminToken" $root)) -}}
{{- end -}}
{{- if $v.dispatcher.admin.tls.enabled -}}
{{- $p := include "ftp-pooler.path.adminTLS" $root -}}
{{- $t := dict "cert_file" (printf "%s/tls.crt" $p) "key_file" (printf "%s/tls.key" $p) -}}
{{- if $v.dispatcher.admin.tls.mutual -}}
{{- $_ := set $t "client_ca_file" (printf "%s/%s" $p $v.dispatcher.admin.tls.caKey) -}}
{{- end -}}
{{- $_ := set $admin "tls" $t -}}
{{- end -}}
{{- if $admin -}}
{{- $_ := set $dispatcher "admin" $admin -}}
{{- end -}}
{{- $doc := dict
  "kafka" $kafka
  "pool" $c.pool
  "transfer" $c.transfer
  "retry" $c.retry
  "lease" $c.lease
  "circuit_breaker" $c.circuit_breaker
  "logging" $c.logging
  "api" (dict "host" "0.0.0.0" "port" $http)
  "metrics" (dict "port" $http "pprof" (default false $v.profiling))
  "dispatcher" $dispatcher
  "agent" $agent
-}}
{{- toYaml $doc -}}
{{- end -}}

{{/*
connections.ini rendered from connections.endpoints. Passwords never appear in
it: each is a file in the ftp-passwords volume, named by pass_file. SFTP
private keys, their passphrases and known_hosts files are files in the
sftp-keys volume, named by key_file, key_passphrase_file and known_hosts_file.
*/}}
{{- define "ftp-pooler.connectionsIni" -}}
{{- $root := . -}}
; connections.ini rendered by the ftp-pooler Helm chart from connections.endpoints.
; Passwords are files in {{ include "ftp-pooler.path.ftpPasswords" $root }} (pass_file).
{{- if include "ftp-pooler.hasSftpKeys" $root }}
; SFTP keys and known_hosts are files in {{ include "ftp-pooler.path.sftpKeys" $root }}.
{{- end }}
{{- range $id, $ep := .Values.connections.endpoints }}

[{{ $id }}]
type = {{ $ep.type }}
{{- if eq $ep.type "local" }}
base_path = {{ $ep.basePath }}
{{- else }}
host = {{ $ep.host }}
{{- with $ep.port }}
port = {{ int . }}
{{- end }}
{{- with $ep.user }}
user = {{ . }}
{{- end }}
{{- if or $ep.password $ep.passwordSecret }}
pass_file = {{ include "ftp-pooler.path.ftpPasswords" $root }}/{{ $id }}
{{- end }}
{{- if eq $ep.type "sftp" }}
{{- if $ep.privateKeySecret }}
key_file = {{ include "ftp-pooler.path.sftpKeys" $root }}/{{ $id }}.key
{{- end }}
{{- if $ep.privateKeyPassphraseSecret }}
key_passphrase_file = {{ include "ftp-pooler.path.sftpKeys" $root }}/{{ $id }}.passphrase
{{- end }}
{{- if $ep.knownHostsSecret }}
known_hosts_file = {{ include "ftp-pooler.path.sftpKeys" $root }}/{{ $id }}.known_hosts
{{- end }}
{{- with $ep.hostKeyFingerprint }}
host_key_fingerprint = {{ if kindIs "slice" . }}{{ join ", " . }}{{ else }}{{ . }}{{ end }}
{{- end }}
{{- if $ep.insecureIgnoreHostKey }}
insecure_ignore_host_key = true
{{- end }}
{{- end }}
{{- if hasKey $ep "passive" }}
passive = {{ $ep.passive }}
{{- end }}
{{- with $ep.timeout }}
timeout = {{ . }}
{{- end }}
{{- with $ep.tls }}
tls = {{ . }}
{{- end }}
{{- with $ep.tlsServerName }}
tls_server_name = {{ . }}
{{- end }}
{{- if $ep.tlsCaSecret }}
tls_ca_file = {{ include "ftp-pooler.path.ftpsCA" $root }}/{{ $id }}.crt
{{- end }}
{{- if $ep.tlsInsecureSkipVerify }}
tls_insecure_skip_verify = true
{{- end }}
{{- with $ep.tlsMaxVersion }}
tls_max_version = {{ . }}
{{- end }}
{{- with $ep.maxConnections }}
max_connections = {{ int . }}
{{- end }}
{{- with $ep.maxSessionsPerConnection }}
max_sessions_per_connection = {{ int . }}
{{- end }}
{{- end }}
{{- end }}
{{ end -}}

{{/* Do any endpoints read a password file? */}}
{{- define "ftp-pooler.hasPasswords" -}}
{{- if not .Values.connections.existingSecret -}}
{{- range $id, $ep := .Values.connections.endpoints -}}
{{- if and (ne $ep.type "local") (or $ep.password $ep.passwordSecret) -}}true{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Do any endpoints trust a private FTPS CA? */}}
{{- define "ftp-pooler.hasFtpsCA" -}}
{{- if not .Values.connections.existingSecret -}}
{{- range $id, $ep := .Values.connections.endpoints -}}
{{- if and (ne $ep.type "local") $ep.tlsCaSecret -}}true{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Do any sftp endpoints read a private key or known_hosts file? */}}
{{- define "ftp-pooler.hasSftpKeys" -}}
{{- if not .Values.connections.existingSecret -}}
{{- range $id, $ep := .Values.connections.endpoints -}}
{{- if and (eq $ep.type "sftp") (or $ep.privateKeySecret $ep.knownHostsSecret) -}}true{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The SFTP key volume, from existing Secrets: <id>.key (privateKeySecret),
<id>.passphrase (privateKeyPassphraseSecret) and <id>.known_hosts
(knownHostsSecret). Both components mount it: each reads connections.ini
whole at start-up, key and known_hosts files included.
*/}}
{{- define "ftp-pooler.volume.sftpKeys" -}}
{{- if include "ftp-pooler.hasSftpKeys" . }}
- name: sftp-keys
  projected:
    defaultMode: 0440
    sources:
      {{- range $id, $ep := .Values.connections.endpoints }}
      {{- if eq $ep.type "sftp" }}
      {{- with $ep.privateKeySecret }}
      - secret:
          name: {{ .name }}
          items:
            - key: {{ .key }}
              path: {{ $id }}.key
      {{- end }}
      {{- with $ep.privateKeyPassphraseSecret }}
      - secret:
          name: {{ .name }}
          items:
            - key: {{ .key }}
              path: {{ $id }}.passphrase
      {{- end }}
      {{- with $ep.knownHostsSecret }}
      - secret:
          name: {{ .name }}
          items:
            - key: {{ .key }}
              path: {{ $id }}.known_hosts
      {{- end }}
      {{- end }}
      {{- end }}
{{- end }}
{{- end -}}

{{/* The FTP password volume (FTP and SFTP endpoints): chart-held passwords and existing Secrets, one file per endpoint. */}}
{{- define "ftp-pooler.volume.ftpPasswords" -}}
{{- if include "ftp-pooler.hasPasswords" . }}
- name: ftp-passwords
  projected:
    defaultMode: 0440
    sources:
      {{- range $id, $ep := .Values.connections.endpoints }}
      {{- if and (ne $ep.type "local") $ep.password }}
      - secret:
          name: {{ include "ftp-pooler.connections.secret" $ }}
          items:
            - key: {{ $id }}.password
              path: {{ $id }}
      {{- else if and (ne $ep.type "local") $ep.passwordSecret }}
      - secret:
          name: {{ $ep.passwordSecret.name }}
          items:
            - key: {{ $ep.passwordSecret.key }}
              path: {{ $id }}
      {{- end }}
      {{- end }}
{{- end }}
{{- end -}}

{{/* Pod-level settings shared by the dispatcher, the agents and the test pods. */}}
{{- define "ftp-pooler.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{- define "ftp-pooler.containerSecurityContext" -}}
{{- toYaml .Values.securityContext -}}
{{- end -}}

{{/*
Soft or hard anti-affinity spreading a component's pods over nodes, unless
the component sets its own affinity. Arguments: dict "root" $ "component" name "values" component values.
*/}}
{{- define "ftp-pooler.affinity" -}}
{{- if .values.affinity -}}
{{- toYaml .values.affinity -}}
{{- else if eq .values.podAntiAffinity "soft" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include (printf "ftp-pooler.%s.selectorLabels" .component) .root | nindent 12 }}
{{- else if eq .values.podAntiAffinity "hard" -}}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include (printf "ftp-pooler.%s.selectorLabels" .component) .root | nindent 10 }}
{{- end -}}
{{- end -}}

{{/* OpenTelemetry environment for a process. Arguments: dict "root" $ "service" name. */}}
{{- define "ftp-pooler.otelEnv" -}}
{{- with .root.Values.tracing -}}
{{- if .enabled }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ required "tracing.endpoint is required when tracing.enabled" .endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .protocol | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ $.service | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .sampler | quote }}
{{- if .samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplerArg | quote }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "service.namespace=%s,k8s.namespace.name=%s,k8s.pod.name=$(POD_NAME)%s" $.root.Release.Namespace $.root.Release.Namespace (ternary "" (printf ",%s" .resourceAttributes) (empty .resourceAttributes)) | quote }}
{{- if .headersSecret.name }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  valueFrom:
    secretKeyRef:
      name: {{ .headersSecret.name }}
      key: {{ .headersSecret.key }}
{{- end }}
{{- else }}
- name: OTEL_SDK_DISABLED
  value: "true"
{{- end }}
{{- end }}
{{- end -}}

{{/* Probe timing fields shared by all probe kinds. */}}
{{- define "ftp-pooler.probeTiming" -}}
{{- range $k := list "initialDelaySeconds" "periodSeconds" "timeoutSeconds" "successThreshold" "failureThreshold" }}
{{- if hasKey $.probe $k }}
{{ $k }}: {{ int (get $.probe $k) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Fields every cert-manager Certificate of the chart shares. */}}
{{- define "ftp-pooler.certificateCommon" -}}
{{- $cm := .Values.certManager -}}
duration: {{ $cm.duration }}
renewBefore: {{ $cm.renewBefore }}
privateKey:
  algorithm: {{ $cm.privateKey.algorithm }}
  {{- if ne $cm.privateKey.algorithm "Ed25519" }}
  size: {{ int $cm.privateKey.size }}
  {{- end }}
  encoding: PKCS8
  rotationPolicy: Always
issuerRef:
  name: {{ $cm.issuerRef.name }}
  kind: {{ $cm.issuerRef.kind }}
  group: {{ $cm.issuerRef.group }}
{{- end -}}

{{/* The dispatcher's command line (also used by the helm test's --check-config). */}}
{{- define "ftp-pooler.dispatcher.args" -}}
- --config={{ include "ftp-pooler.path.config" . }}/config.yaml
- --connections={{ include "ftp-pooler.path.connections" . }}/connections.ini
- --listen=:{{ int .Values.dispatcher.ports.lease }}
- --admin-listen=:{{ int .Values.dispatcher.ports.admin }}
- --http-listen=:{{ int .Values.dispatcher.ports.http }}
{{- end -}}

{{/* The dispatcher's volume mounts (also the helm test's). */}}
{{- define "ftp-pooler.dispatcher.volumeMounts" -}}
- name: config
  mountPath: {{ include "ftp-pooler.path.config" . }}
  readOnly: true
- name: connections
  mountPath: {{ include "ftp-pooler.path.connections" . }}
  readOnly: true
{{- if include "ftp-pooler.hasPasswords" . }}
# connections.ini's pass_file passwords: the dispatcher reads
# connections.ini whole at start-up, passwords included.
- name: ftp-passwords
  mountPath: {{ include "ftp-pooler.path.ftpPasswords" . }}
  readOnly: true
{{- end }}
{{- if include "ftp-pooler.hasSftpKeys" . }}
# SFTP key_file, key_passphrase_file and known_hosts_file: read at start-up too.
- name: sftp-keys
  mountPath: {{ include "ftp-pooler.path.sftpKeys" . }}
  readOnly: true
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: {{ include "ftp-pooler.path.tls" . }}
  readOnly: true
{{- end }}
{{- if .Values.dispatcher.admin.tls.enabled }}
- name: admin-tls
  mountPath: {{ include "ftp-pooler.path.adminTLS" . }}
  readOnly: true
{{- end }}
{{- if .Values.dispatcher.admin.token.enabled }}
- name: admin-token
  mountPath: {{ include "ftp-pooler.path.adminToken" . }}
  readOnly: true
{{- end }}
{{- if and .Values.kafkaSecurity.tls.enabled .Values.kafkaSecurity.tls.existingSecret }}
- name: kafka-tls
  mountPath: {{ include "ftp-pooler.path.kafkaTLS" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* The dispatcher's volumes (also the helm test's). */}}
{{- define "ftp-pooler.dispatcher.volumes" -}}
- name: config
  {{- if (include "ftp-pooler.kafkaClientSensitive" .) }}
  secret:
    secretName: {{ include "ftp-pooler.dispatcher.fullname" . }}-config
    defaultMode: 0440
  {{- else }}
  configMap:
    name: {{ include "ftp-pooler.fullname" . }}-config
  {{- end }}
- name: connections
  secret:
    secretName: {{ include "ftp-pooler.connections.secret" . }}
    defaultMode: 0440
    items:
      - key: {{ include "ftp-pooler.connections.key" . }}
        path: connections.ini
{{- include "ftp-pooler.volume.ftpPasswords" . }}
{{- include "ftp-pooler.volume.sftpKeys" . }}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ include "ftp-pooler.tls.dispatcherSecret" . }}
    defaultMode: 0440
{{- end }}
{{- if .Values.dispatcher.admin.tls.enabled }}
- name: admin-tls
  secret:
    secretName: {{ include "ftp-pooler.adminTLS.secret" . }}
    defaultMode: 0440
{{- end }}
{{- if .Values.dispatcher.admin.token.enabled }}
- name: admin-token
  secret:
    secretName: {{ include "ftp-pooler.adminToken.secret" . }}
    defaultMode: 0440
    items:
      - key: {{ include "ftp-pooler.adminToken.key" . }}
        path: token
{{- end }}
{{- if and .Values.kafkaSecurity.tls.enabled .Values.kafkaSecurity.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafkaSecurity.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{/* The agent's command line (also used by the helm test's --check-config). */}}
{{- define "ftp-pooler.agent.args" -}}
- --config={{ include "ftp-pooler.path.config" . }}/config.yaml
- --connections={{ include "ftp-pooler.path.connections" . }}/connections.ini
# Every dispatcher replica: an agent takes leases from all of them.
- --dispatcher={{ include "ftp-pooler.dispatcherAddresses" . }}
- --slots={{ int .Values.agent.slots }}
- --http-listen=:{{ int .Values.agent.ports.http }}
{{- end -}}

{{/* The agent's volume mounts but local storage (also the helm test's). */}}
{{- define "ftp-pooler.agent.volumeMounts" -}}
- name: config
  mountPath: {{ include "ftp-pooler.path.config" . }}
  readOnly: true
- name: connections
  mountPath: {{ include "ftp-pooler.path.connections" . }}
  readOnly: true
{{- if include "ftp-pooler.hasPasswords" . }}
- name: ftp-passwords
  mountPath: {{ include "ftp-pooler.path.ftpPasswords" . }}
  readOnly: true
{{- end }}
{{- if include "ftp-pooler.hasSftpKeys" . }}
- name: sftp-keys
  mountPath: {{ include "ftp-pooler.path.sftpKeys" . }}
  readOnly: true
{{- end }}
{{- if include "ftp-pooler.hasFtpsCA" . }}
- name: ftps-ca
  mountPath: {{ include "ftp-pooler.path.ftpsCA" . }}
  readOnly: true
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: {{ include "ftp-pooler.path.tls" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* The agent's volumes but local storage (also the helm test's). */}}
{{- define "ftp-pooler.agent.volumes" -}}
# Agents never connect to Kafka: they mount the ConfigMap, which has
# no Kafka credentials, even when the dispatchers' copy does.
- name: config
  configMap:
    name: {{ include "ftp-pooler.fullname" . }}-config
- name: connections
  secret:
    secretName: {{ include "ftp-pooler.connections.secret" . }}
    defaultMode: 0440
    items:
      - key: {{ include "ftp-pooler.connections.key" . }}
        path: connections.ini
{{- include "ftp-pooler.volume.ftpPasswords" . }}
{{- include "ftp-pooler.volume.sftpKeys" . }}
{{- if include "ftp-pooler.hasFtpsCA" . }}
- name: ftps-ca
  projected:
    defaultMode: 0444
    sources:
      {{- range $id, $ep := .Values.connections.endpoints }}
      {{- if and (ne $ep.type "local") $ep.tlsCaSecret }}
      - secret:
          name: {{ $ep.tlsCaSecret.name }}
          items:
            - key: {{ $ep.tlsCaSecret.key }}
              path: {{ $id }}.crt
      {{- end }}
      {{- end }}
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    {{- if .Values.tls.mutual }}
    secretName: {{ include "ftp-pooler.tls.agentSecret" . }}
    defaultMode: 0440
    {{- else }}
    # Only the CA that verifies the dispatchers.
    secretName: {{ include "ftp-pooler.tls.dispatcherSecret" . }}
    defaultMode: 0440
    items:
      - key: {{ .Values.tls.caKey }}
        path: {{ .Values.tls.caKey }}
    {{- end }}
{{- end }}
{{- end -}}

{{/* NetworkPolicy egress rule for DNS. */}}
{{- define "ftp-pooler.networkPolicy.dnsEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
  {{- with .Values.networkPolicy.egress.dnsTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* NetworkPolicy egress rule for the OTLP collector, when tracing is on. */}}
{{- define "ftp-pooler.networkPolicy.otlpEgress" -}}
{{- if .Values.tracing.enabled -}}
- ports:
    {{- range .Values.networkPolicy.egress.otlpPorts }}
    - port: {{ int . }}
      protocol: TCP
    {{- end }}
  {{- with .Values.networkPolicy.egress.otlpTo }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
{{- end -}}
