{{/* Names and labels. */}}

{{- define "sandbox-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sandbox-webhook.fullname" -}}
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

{{- define "sandbox-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sandbox-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sandbox-webhook.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sandbox-webhook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sandbox-webhook
{{- end }}

{{- define "sandbox-webhook.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sandbox-webhook.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image, with global.imageRegistry in front when set (a mirror for every image of the chart). */}}
{{- define "sandbox-webhook.image" -}}
{{- $repository := .Values.image.repository }}
{{- with (.Values.global).imageRegistry }}
{{- $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The address the server listens on: listenAddress, else :: when the Service asks for IPv6. */}}
{{- define "sandbox-webhook.listenAddress" -}}
{{- $s := .Values.service }}
{{- if .Values.listenAddress }}
{{- .Values.listenAddress }}
{{- else if or (has "IPv6" (default (list) $s.ipFamilies)) (has $s.ipFamilyPolicy (list "PreferDualStack" "RequireDualStack")) }}
{{- "::" }}
{{- else }}
{{- "0.0.0.0" }}
{{- end }}
{{- end }}

{{/* Names of the hook objects (cleanup before uninstall, helm test). */}}
{{- define "sandbox-webhook.cleanupName" -}}
{{- printf "%s-cleanup" (include "sandbox-webhook.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "sandbox-webhook.testName" -}}
{{- printf "%s-test" (include "sandbox-webhook.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The MutatingWebhookConfiguration, as YAML. Called with (dict "root" $ "caBundle" <base64 or "">).
webhook.registration=helm renders it as a manifest; =server renders it into a ConfigMap that the
replicas apply once one of them is ready (src/cluster/registration.ts), with the caBundle they read
from the mounted CA.

Two webhooks on one /mutate path:
- pods: CREATE is decided and patched; UPDATE and pods/ephemeralcontainers UPDATE are re-decided when
  they change an image (an image swap on a running pod, `kubectl debug`; docs/kubernetes.md §7);
- workloads (webhook.workloads.enabled): their pod templates are judged early; failurePolicy Ignore by
  default, since the pods they make are checked again at their own CREATE.
*/}}
{{- define "sandbox-webhook.webhookConfiguration" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $fullname := include "sandbox-webhook.fullname" $root }}
{{- $clientConfig := dict }}
{{- if $v.webhook.url }}
{{- $_ := set $clientConfig "url" $v.webhook.url }}
{{- else }}
{{- $_ := set $clientConfig "service" (dict "name" $fullname "namespace" $root.Release.Namespace "path" "/mutate" "port" (int $v.service.port)) }}
{{- end }}
{{- with .caBundle }}
{{- $_ := set $clientConfig "caBundle" . }}
{{- end }}
{{- /* Selected by the immutable kubernetes.io/metadata.name label, which no tenant can set: the webhook is
never called for its own namespace or kube-system, so it can always be scheduled and restarted. There
is deliberately no objectSelector: pod labels belong to tenants and must not exempt a pod
(docs/kubernetes.md §4). */}}
{{- $namespaceSelector := dict "matchExpressions" (list (dict "key" "kubernetes.io/metadata.name" "operator" "NotIn" "values" (include "sandbox-webhook.excludedNamespaces" $root | fromJsonArray))) }}
{{- $pods := dict
      "name" $v.webhook.name
      "admissionReviewVersions" (list "v1")
      "sideEffects" "None"
      "failurePolicy" $v.webhook.failurePolicy
      "matchPolicy" "Equivalent"
      "reinvocationPolicy" "IfNeeded"
      "timeoutSeconds" (int $v.webhook.timeoutSeconds)
      "rules" (list
        (dict "apiGroups" (list "") "apiVersions" (list "v1") "operations" (list "CREATE" "UPDATE") "resources" (list "pods") "scope" "Namespaced")
        (dict "apiGroups" (list "") "apiVersions" (list "v1") "operations" (list "UPDATE") "resources" (list "pods/ephemeralcontainers") "scope" "Namespaced"))
      "namespaceSelector" $namespaceSelector
      "clientConfig" $clientConfig }}
{{- $webhooks := list $pods }}
{{- if $v.webhook.workloads.enabled }}
{{- $workloads := dict
      "name" $v.webhook.workloads.name
      "admissionReviewVersions" (list "v1")
      "sideEffects" "None"
      "failurePolicy" $v.webhook.workloads.failurePolicy
      "matchPolicy" "Equivalent"
      "reinvocationPolicy" "Never"
      "timeoutSeconds" (int $v.webhook.timeoutSeconds)
      "rules" (list
        (dict "apiGroups" (list "apps") "apiVersions" (list "v1") "operations" (list "CREATE" "UPDATE") "resources" (list "deployments" "statefulsets" "daemonsets" "replicasets") "scope" "Namespaced")
        (dict "apiGroups" (list "") "apiVersions" (list "v1") "operations" (list "CREATE" "UPDATE") "resources" (list "replicationcontrollers" "podtemplates") "scope" "Namespaced")
        (dict "apiGroups" (list "batch") "apiVersions" (list "v1") "operations" (list "CREATE" "UPDATE") "resources" (list "jobs" "cronjobs") "scope" "Namespaced"))
      "namespaceSelector" $namespaceSelector
      "clientConfig" $clientConfig }}
{{- $webhooks = append $webhooks $workloads }}
{{- end }}
{{- $metadata := dict "name" $fullname "labels" (include "sandbox-webhook.labels" $root | fromYaml) }}
{{- if eq $v.webhook.registration "server" }}
{{- /* The ClusterRole Helm deletes on uninstall owns the configuration: the garbage collector removes it
then, even when the pre-delete hook did not run. */}}
{{- $_ := set $metadata "annotations" (dict "sandbox-webhook.io/owner-clusterrole" $fullname) }}
{{- $_ := set $metadata.labels "app.kubernetes.io/managed-by" "sandbox-webhook" }}
{{- else if eq $v.certificates.mode "certManager" }}
{{- /* cert-manager's cainjector writes the serving certificate's CA into clientConfig.caBundle. */}}
{{- $_ := set $metadata "annotations" (dict "cert-manager.io/inject-ca-from" (printf "%s/%s" $root.Release.Namespace (include "sandbox-webhook.tlsSecretName" $root))) }}
{{- end }}
{{- $object := dict "apiVersion" "admissionregistration.k8s.io/v1" "kind" "MutatingWebhookConfiguration" "metadata" $metadata "webhooks" $webhooks }}
{{- toYaml $object }}
{{- end }}

{{/*
Namespaces that must never reach the webhook: kube-system and the release namespace, so that the webhook
cannot block the pods it needs to run (docs/kubernetes.md §4), plus webhook.excludedNamespaces. Printed as a
JSON list.
*/}}
{{- define "sandbox-webhook.excludedNamespaces" -}}
{{- concat (list "kube-system" .Release.Namespace) .Values.webhook.excludedNamespaces | uniq | toJson }}
{{- end }}

{{/* Name of the Secret holding tls.crt and tls.key for the server. */}}
{{- define "sandbox-webhook.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "existingSecret" }}
{{- required "certificates.existingSecret.name is required when certificates.mode is existingSecret" .Values.certificates.existingSecret.name }}
{{- else }}
{{- printf "%s-tls" (include "sandbox-webhook.fullname" .) }}
{{- end }}
{{- end }}

{{/*
DNS names of the serving certificate: every name the Service answers to (the apiserver dials
<svc>.<ns>.svc, docs/kubernetes.md §4), the host of webhook.url when it is a name, and
certificates.extraDNSNames. Printed as a JSON list.
*/}}
{{- define "sandbox-webhook.dnsNames" -}}
{{- $svc := include "sandbox-webhook.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain) }}
{{- $host := include "sandbox-webhook.urlHost" . }}
{{- if and $host (not (include "sandbox-webhook.isIP" $host)) }}
{{- $names = append $names $host }}
{{- end }}
{{- concat $names .Values.certificates.extraDNSNames | uniq | toJson }}
{{- end }}

{{/* IP addresses of the serving certificate: the host of webhook.url when it is an address. JSON list. */}}
{{- define "sandbox-webhook.ipAddresses" -}}
{{- $host := include "sandbox-webhook.urlHost" . }}
{{- if and $host (include "sandbox-webhook.isIP" $host) }}
{{- list $host | toJson }}
{{- else }}
{{- list | toJson }}
{{- end }}
{{- end }}

{{- define "sandbox-webhook.urlHost" -}}
{{- if .Values.webhook.url }}
{{- (urlParse .Values.webhook.url).hostname | trimPrefix "[" | trimSuffix "]" }}
{{- end }}
{{- end }}

{{- define "sandbox-webhook.isIP" -}}
{{- if or (regexMatch "^[0-9]+(\\.[0-9]+){3}$" .) (contains ":" .) }}true{{ end }}
{{- end }}

{{/*
Runtime classes the ValidatingAdmissionPolicy accepts: validatingAdmissionPolicy.acceptedRuntimeClasses,
else what the webhook itself accepts or injects (policy.runtimeClassName, policy.acceptedRuntimeClasses
and each rule's runtimeClassName), so the policy never rejects a pod the webhook
has just sandboxed. JSON list.
*/}}
{{- define "sandbox-webhook.vapAcceptedRuntimeClasses" -}}
{{- $vap := .Values.validatingAdmissionPolicy }}
{{- if $vap.acceptedRuntimeClasses }}
{{- $vap.acceptedRuntimeClasses | uniq | toJson }}
{{- else }}
{{- $p := .Values.policy }}
{{- $classes := concat (list (default "gvisor" $p.runtimeClassName)) (default (list) $p.acceptedRuntimeClasses) }}
{{- range $p.rules }}
{{- if .runtimeClassName }}
{{- $classes = append $classes .runtimeClassName }}
{{- end }}
{{- end }}
{{- $classes | uniq | toJson }}
{{- end }}
{{- end }}

{{/*
Checks of combinations that the schema cannot express; included by every template that depends on them
so that each fails with the same message whichever renders first.
*/}}
{{- define "sandbox-webhook.validate" -}}
{{- /*
Defaulting first, in place, so that every template (those that read .Values directly too) sees the
same values: validatingAdmissionPolicy.validationActions empty means [Deny], or [Warn, Audit] under an
audit-mode policy (so that `policy.mode=audit` alone renders and denies nothing).
*/}}
{{- $vapValues := .Values.validatingAdmissionPolicy }}
{{- if not $vapValues.validationActions }}
{{- $_ := set $vapValues "validationActions" (ternary (list "Warn" "Audit") (list "Deny") (eq (.Values.policy.mode | default "enforce") "audit")) }}
{{- end }}
{{- /* Kubernetes 1.30 or later (Chart.yaml kubeVersion, which Helm checks) serves every built-in API the
chart uses; the optional ones come from CRDs, checked here. `helm template` knows no cluster: pass
--kube-version and --api-versions (as Argo CD does). */}}
{{- if and .Values.serviceMonitor.enabled (not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) }}
{{- fail "serviceMonitor.enabled is true but the cluster does not serve monitoring.coreos.com/v1 ServiceMonitor: install the Prometheus Operator CRDs first, or pass --api-versions monitoring.coreos.com/v1 to helm template" }}
{{- end }}
{{- if and .Values.prometheusRule.enabled (not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")) }}
{{- fail "prometheusRule.enabled is true but the cluster does not serve monitoring.coreos.com/v1 PrometheusRule: install the Prometheus Operator CRDs first, or pass --api-versions monitoring.coreos.com/v1 to helm template" }}
{{- end }}
{{- if and (eq .Values.certificates.mode "certManager") (not (.Capabilities.APIVersions.Has "cert-manager.io/v1")) }}
{{- fail "certificates.mode is certManager but the cluster does not serve cert-manager.io/v1 Certificate: install cert-manager first, or pass --api-versions cert-manager.io/v1 to helm template" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.service.enabled) }}
{{- fail "serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor selects the metrics Service" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (eq (int .Values.containerPorts.metrics) 0) }}
{{- fail "serviceMonitor.enabled needs metrics: containerPorts.metrics is 0 (metrics off)" }}
{{- end }}
{{- if eq (int .Values.containerPorts.metrics) (int .Values.containerPorts.webhook) }}
{{- fail (printf "containerPorts.metrics and containerPorts.webhook are both %v: the metrics port must differ from the webhook port" .Values.containerPorts.webhook) }}
{{- end }}
{{- /* An unset validatingAdmissionPolicy.namespaceSelector is checked by templates/validatingadmissionpolicy.yaml: it exempts the namespaces allow rules name, and refuses what it cannot tell apart. */}}
{{- $c := .Values.certificates }}
{{- if eq $c.mode "existingSecret" }}
{{- if not $c.existingSecret.name }}
{{- fail "certificates.existingSecret.name is required when certificates.mode is existingSecret: the name of a kubernetes.io/tls Secret in the release namespace" }}
{{- end }}
{{- if not $c.existingSecret.caBundle }}
{{- fail "certificates.existingSecret.caBundle is required when certificates.mode is existingSecret: the PEM of the CA that signed the Secret's certificate (e.g. --set-file certificates.existingSecret.caBundle=ca.crt); without it the apiserver cannot trust the webhook" }}
{{- end }}
{{- if not (contains "-----BEGIN CERTIFICATE-----" $c.existingSecret.caBundle) }}
{{- fail "certificates.existingSecret.caBundle must be a PEM certificate (-----BEGIN CERTIFICATE-----), not base64: the chart encodes it" }}
{{- end }}
{{- else if $c.existingSecret.name }}
{{- fail (printf "certificates.existingSecret.name is set but certificates.mode is %s: set certificates.mode=existingSecret to use that Secret" $c.mode) }}
{{- end }}
{{- if and (ne $c.mode "certManager") $c.certManager.issuerRef }}
{{- fail (printf "certificates.certManager.issuerRef is set but certificates.mode is %s: set certificates.mode=certManager to use that issuer" $c.mode) }}
{{- end }}
{{- with .Values.webhook.url }}
{{- $u := urlParse . }}
{{- if ne $u.scheme "https" }}
{{- fail (printf "webhook.url must use https (the apiserver only calls webhooks over TLS), got %q" .) }}
{{- end }}
{{- if or $u.userinfo $u.query $u.fragment }}
{{- fail (printf "webhook.url must not carry user info, a query or a fragment (the apiserver rejects them), got %q" .) }}
{{- end }}
{{- if not $u.hostname }}
{{- fail (printf "webhook.url has no host: %q" .) }}
{{- end }}
{{- end }}
{{- $vap := .Values.validatingAdmissionPolicy }}
{{- if and $vap.enabled (eq .Values.policy.mode "audit") (has "Deny" $vap.validationActions) }}
{{- fail "validatingAdmissionPolicy.validationActions contains Deny but policy.mode is audit: the policy would reject the pods the webhook only reports on; use [Warn, Audit] or disable validatingAdmissionPolicy" }}
{{- end }}
{{- if ge (int .Values.shutdownDelaySeconds) (int .Values.terminationGracePeriodSeconds) }}
{{- fail (printf "shutdownDelaySeconds (%v) must be less than terminationGracePeriodSeconds (%v): the pod would be killed before it drains" .Values.shutdownDelaySeconds .Values.terminationGracePeriodSeconds) }}
{{- end }}
{{- $ruleNames := list }}
{{- range .Values.policy.rules }}
{{- if eq .name (include "sandbox-webhook.exemptRuleName" $) }}
{{- fail (printf "policy.rules: the rule name %q is reserved for the rule the chart puts first" .name) }}
{{- end }}
{{- if has .name $ruleNames }}
{{- fail (printf "policy.rules: the rule name %q is used twice; rule names must be unique" .name) }}
{{- end }}
{{- $ruleNames = append $ruleNames .name }}
{{- if and .runtimeClassName (ne .action "sandbox") }}
{{- fail (printf "policy.rules: rule %q sets runtimeClassName but its action is %s; only a sandbox rule injects a RuntimeClass" .name .action) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sandbox-webhook.exemptRuleName" -}}
chart-exempt-namespaces
{{- end }}
