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

{{- define "sandbox-webhook.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Namespaces that must never reach the webhook: kube-system and the release namespace, so that the webhook
cannot block the pods it needs to run (KUBERNETES.md §4), plus webhook.excludedNamespaces. Printed as a
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
<svc>.<ns>.svc, KUBERNETES.md §4), the host of webhook.url when it is a name, and
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
