#!/bin/sh
# Makes a development CA and a serving certificate for sandbox-webhook with openssl.
#
#   sh certs/generate.sh [--if-missing] [--out DIR] [--service NAME] [--namespace NS] [--days N]
#
# Writes DIR/ca.crt, DIR/ca.key, DIR/tls.crt and DIR/tls.key (the key names of a kubernetes.io/tls
# Secret). The serving certificate carries the DNS SANs the apiserver dials for a service reference
# (<service>.<namespace>.svc: docs/kubernetes.md §4) plus localhost, 127.0.0.1 and ::1 for local use.
# These are development certificates: production installs use cert-manager or the Helm chart.
set -eu

out=$(dirname "$0")
service=sandbox-webhook
namespace=sandbox-webhook
days=365
if_missing=0
while [ $# -gt 0 ]; do
  case "$1" in
    --if-missing) if_missing=1 ;;
    --out) out=$2; shift ;;
    --service) service=$2; shift ;;
    --namespace) namespace=$2; shift ;;
    --days) days=$2; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "certs/generate.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$if_missing" = 1 ] && [ -s "$out/tls.crt" ] && [ -s "$out/tls.key" ] && [ -s "$out/ca.crt" ]; then
  exit 0
fi
command -v openssl >/dev/null 2>&1 || { echo "certs/generate.sh: openssl is required" >&2; exit 1; }
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat >"$tmp/ext.cnf" <<CNF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:$service, DNS:$service.$namespace, DNS:$service.$namespace.svc, DNS:$service.$namespace.svc.cluster.local, DNS:localhost, IP:127.0.0.1, IP:::1
CNF

umask 077
# ECDSA P-256: a TLS handshake costs the server a fraction of an RSA-2048 one, which matters when
# the apiserver opens many connections at once.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days "$days" \
  -subj "/CN=sandbox-webhook development CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -subj "/CN=$service.$namespace.svc" \
  -keyout "$tmp/tls.key" -out "$tmp/tls.csr" 2>/dev/null
openssl x509 -req -sha256 -days "$days" -in "$tmp/tls.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" \
  -CAcreateserial -extfile "$tmp/ext.cnf" -out "$tmp/tls.crt" 2>/dev/null

# Move into place key first, certificate last, each by rename: a server watching the directory
# never reads a certificate whose key is not there yet.
for f in ca.key ca.crt tls.key tls.crt; do
  cp "$tmp/$f" "$out/.$f.new" && mv -f "$out/.$f.new" "$out/$f"
done
chmod 644 "$out/ca.crt" "$out/tls.crt"
echo "certs/generate.sh: wrote $out/ca.crt, $out/tls.crt, $out/tls.key (SANs: $service.$namespace.svc, localhost, 127.0.0.1)"
