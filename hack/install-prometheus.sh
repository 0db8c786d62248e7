#!/usr/bin/env bash
# Installs what the chart's monitoring checks need, from Debian packages, and does nothing when it is
# already there (safe to run on every CI job):
#   prometheus  the server and promtool: `promtool check rules` / `promtool test rules` on the chart's
#               PrometheusRule (test/e2e/chart-monitoring.e2e.test.ts), and the Prometheus the e2e
#               run scrapes the webhook and the apiserver with;
#   chromium    (only with --with-chromium) the headless browser that screenshots Prometheus's graph
#               of sandbox coverage into docs/images/sandbox-coverage.png.
#
#   hack/install-prometheus.sh [--with-chromium]
#
# The Debian unit would start a Prometheus on :9090 at install; the tests start their own on a free
# loopback port, so the packaged service is stopped and disabled where systemd runs it.
set -euo pipefail

with_chromium=0
for arg in "$@"; do
  case "$arg" in
    --with-chromium) with_chromium=1 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install-prometheus.sh: unknown argument: $arg" >&2; exit 2 ;;
  esac
done

packages=()
command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1 || packages+=(prometheus)
if [ "$with_chromium" = 1 ]; then
  command -v chromium >/dev/null 2>&1 || packages+=(chromium)
fi

if [ ${#packages[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d exit 101: the package's maintainer scripts must not start services in a CI container.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}"
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

promtool --version 2>&1 | head -n 1
if [ "$with_chromium" = 1 ]; then chromium --version; fi
