#!/usr/bin/env bash
# Builds the control-plane binaries the end-to-end tests run (like envtest, but from Go source, since
# there is no container runtime to pull them from): kube-apiserver, kube-scheduler and kubectl from
# k8s.io/kubernetes, etcd from go.etcd.io/etcd/server/v3, and helm v3, all at pinned versions.
# --with-node adds what a real gVisor node runs (test/e2e-node): kubelet from the same module,
# containerd v2, ctr and containerd-shim-runc-v2 from github.com/containerd/containerd/v2, and runsc and
# its containerd shim (installed as containerd-shim-runsc-v1) from gvisor.dev/gvisor. runc, the CNI
# plugins and busybox come from Debian packages (hack/fetch-node-debs.sh), not from here.
#
#   hack/build-binaries.sh [--with-controller-manager] [--with-node] [--force]
#
# Output: ${SANDBOX_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandbox-webhook}/bin/, outside git.
# Each binary has a stamp file (bin/.<name>.version) holding the version it was built for; a binary whose
# stamp matches its pin is not rebuilt. The last line printed is the bin directory.
#
# Binaries supplied from outside are used and not built (the same order test/e2e/harness/binaries.ts
# resolves them in): TEST_ASSET_KUBE_APISERVER, TEST_ASSET_ETCD, TEST_ASSET_KUBECTL,
# TEST_ASSET_KUBE_SCHEDULER, TEST_ASSET_HELM (a path to one binary each), then KUBEBUILDER_ASSETS (a
# directory holding some of them, as setup-envtest lays it out). With --with-node also TEST_ASSET_KUBELET,
# TEST_ASSET_CONTAINERD, TEST_ASSET_CTR, TEST_ASSET_CONTAINERD_SHIM_RUNC_V2, TEST_ASSET_RUNSC and
# TEST_ASSET_CONTAINERD_SHIM_RUNSC_V1 (test/e2e-node/harness/binaries.ts reads the same names).
set -euo pipefail

KUBERNETES_VERSION=v1.36.3
ETCD_VERSION=v3.5.35
HELM_VERSION=v3.22.0
CONTAINERD_VERSION=v2.4.2
# gVisor publishes no tagged Go module: this is the module proxy's latest for gvisor.dev/gvisor (its
# "go" branch), pinned.
GVISOR_VERSION=v0.0.0-20260905035102-160fafc42237

with_controller_manager=0
with_node=0
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --with-controller-manager) with_controller_manager=1 ;;
    --with-node) with_node=1 ;;
    --force) force=1 ;;
    -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "build-binaries.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

cache=${SANDBOX_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandbox-webhook}
bin=$cache/bin
work=$cache/work
mkdir -p "$bin" "$work"
# Concurrent runs (two test suites starting at once) take turns; the second then finds the stamps.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache/.build.lock"
  flock 9
fi

export GOTOOLCHAIN=local
export CGO_ENABLED=0
# The wrapper modules below have no go.sum checked in: let the go command add what it resolves.
export GOFLAGS="-mod=mod -buildvcs=false"
command -v go >/dev/null 2>&1 || { echo "build-binaries.sh: go is required" >&2; exit 1; }

log() { printf 'build-binaries.sh: %s\n' "$*" >&2; }

# supplied NAME VAR: is NAME provided from outside (TEST_ASSET_* or KUBEBUILDER_ASSETS)?
supplied() {
  local name=$1 var=$2
  if [ -n "${!var:-}" ]; then
    [ -x "${!var}" ] || { echo "build-binaries.sh: $var=${!var} is not an executable" >&2; exit 1; }
    log "$name: using $var=${!var}"
    return 0
  fi
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/$name" ]; then
    log "$name: using KUBEBUILDER_ASSETS/$name"
    return 0
  fi
  return 1
}

# needed NAME VAR VERSION: must NAME be built? (not supplied, and not already built at VERSION)
needed() {
  local name=$1 var=$2 version=$3
  supplied "$name" "$var" && return 1
  if [ "$force" = 0 ] && [ -x "$bin/$name" ] && [ "$(cat "$bin/.$name.version" 2>/dev/null)" = "$version" ]; then
    log "$name: $version already built"
    return 1
  fi
  return 0
}

# install_binary NAME FROM VERSION SECONDS: move a fresh build into place, stamp it, report.
install_binary() {
  local name=$1 from=$2 version=$3 seconds=$4
  mv -f "$from" "$bin/$name"
  echo "$version" >"$bin/.$name.version"
  log "$name $version: built in ${seconds}s, $(du -m "$bin/$name" | cut -f1) MiB"
}

module_info() { go mod download -json "$1"; }
json_field() { sed -n "s/^[[:space:]]*\"$1\": \"\\(.*\\)\",\\{0,1\\}\$/\\1/p" | head -n 1; }

build_kubernetes() {
  local names=(kube-apiserver kube-scheduler kubectl)
  [ "$with_controller_manager" = 1 ] && names+=(kube-controller-manager)
  [ "$with_node" = 1 ] && names+=(kubelet)
  local todo=() name var
  for name in "${names[@]}"; do
    var=TEST_ASSET_$(echo "$name" | tr 'a-z-' 'A-Z_')
    needed "$name" "$var" "$KUBERNETES_VERSION" && todo+=("$name")
  done
  [ ${#todo[@]} -gt 0 ] || return 0

  local info gomod buildtime staging_version mod=$work/kubernetes-$KUBERNETES_VERSION
  info=$(module_info "k8s.io/kubernetes@$KUBERNETES_VERSION")
  gomod=$(echo "$info" | json_field GoMod)
  # buildDate is the release's tag time (from the proxy's .info file), so rebuilds are reproducible.
  buildtime=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$(echo "$info" | json_field Info)")
  [ -n "$gomod" ] && [ -n "$buildtime" ] || { echo "build-binaries.sh: cannot read go.mod or time of k8s.io/kubernetes@$KUBERNETES_VERSION" >&2; exit 1; }
  # Published staging modules carry the kubernetes tag with major 0: v1.36.3 -> v0.36.3.
  staging_version=v0.${KUBERNETES_VERSION#v1.}

  rm -rf "$mod" && mkdir -p "$mod"
  {
    echo "module sandbox-webhook.local/kubernetes-binaries"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//')"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them with ./staging/...;
    # replace directives of a dependency do not apply, so repeat each one here with the published tag.
    # The list comes from the release's own go.mod, so a new staging module needs no edit here.
    sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._/-]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$gomod" |
      while read -r m; do echo "replace $m => $m $staging_version"; done
  } >"$mod/go.mod"
  [ "$(grep -c '^replace' "$mod/go.mod")" -gt 0 ] || { echo "build-binaries.sh: no staging replaces found in $gomod" >&2; exit 1; }

  local minor=${KUBERNETES_VERSION#v1.}
  minor=${minor%%.*}
  local ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    # The module proxy does not know the tag's commit; say so rather than invent one.
    ldflags+=" -X $pkg.gitCommit=unknown -X $pkg.gitTreeState=clean -X $pkg.buildDate=$buildtime"
  done

  local pkgs=() out=$mod/out start
  mkdir -p "$out"
  for name in "${todo[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$name"); done
  log "building ${todo[*]} $KUBERNETES_VERSION (${#todo[@]} binaries; long on few cores)"
  start=$(date +%s)
  # One go build for all binaries: shared packages compile once.
  (cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$out/" "${pkgs[@]}")
  local seconds=$(($(date +%s) - start))
  for name in "${todo[@]}"; do install_binary "$name" "$out/$name" "$KUBERNETES_VERSION" "$seconds"; done
}

build_etcd() {
  needed etcd TEST_ASSET_ETCD "$ETCD_VERSION" || return 0
  local mod=$work/etcd-$ETCD_VERSION start
  rm -rf "$mod" && mkdir -p "$mod"
  # go.etcd.io/etcd/server/v3 is itself a main package, but its go.mod replaces its sibling modules with
  # ../ paths, so `go install ...@version` refuses it; build it as a dependency of a wrapper module
  # instead, whose requirements pin the siblings to the same release.
  cat >"$mod/go.mod" <<EOF
module sandbox-webhook.local/etcd-binary

go $(go env GOVERSION | sed 's/^go//')

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
  log "building etcd $ETCD_VERSION"
  start=$(date +%s)
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$mod/etcd" go.etcd.io/etcd/server/v3)
  install_binary etcd "$mod/etcd" "$ETCD_VERSION" $(($(date +%s) - start))
}

# helm_kube_minor: the minor of the k8s.io/client-go that helm's go.mod requires (v0.37.0 -> 37).
helm_kube_minor() {
  local gomod
  gomod=$(GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9][0-9]*\)\..*/\1/p' "$gomod" | head -n 1
}

build_helm() {
  # Without a cluster (helm template, helm lint) helm assumes the Kubernetes version its release build
  # stamps: helm's Makefile sets pkg/chartutil and pkg/lint/rules k8sVersionMajor/Minor from the client-go
  # it builds against. A plain go install leaves their default, v1.20, which a chart's kubeVersion
  # constraint refuses. A helm built before this stamp was added (no .helm.kube-version) is rebuilt.
  local kube_minor
  kube_minor=$(helm_kube_minor)
  [ -n "$kube_minor" ] || { echo "build-binaries.sh: cannot read k8s.io/client-go from helm $HELM_VERSION's go.mod" >&2; exit 1; }
  if [ "$(cat "$bin/.helm.kube-version" 2>/dev/null)" != "v1.$kube_minor" ]; then rm -f "$bin/.helm.version"; fi
  needed helm TEST_ASSET_HELM "$HELM_VERSION" || return 0
  local out=$work/helm-$HELM_VERSION start stamps=""
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    stamps="$stamps -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$kube_minor"
  done
  rm -rf "$out" && mkdir -p "$out"
  log "building helm $HELM_VERSION (Kubernetes v1.$kube_minor assumed without a cluster)"
  start=$(date +%s)
  # go install pkg@version works here (helm's go.mod has no replace directives) and ignores -mod.
  GOFLAGS=-buildvcs=false GOBIN=$out go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean$stamps" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  install_binary helm "$out/helm" "$HELM_VERSION" $(($(date +%s) - start))
  echo "v1.$kube_minor" >"$bin/.helm.kube-version"
}

# asset_var NAME: the TEST_ASSET_* variable that supplies NAME (containerd-shim-runc-v2 ->
# TEST_ASSET_CONTAINERD_SHIM_RUNC_V2).
asset_var() { echo "TEST_ASSET_$(echo "$1" | tr 'a-z-' 'A-Z_')"; }

# wrapper_module DIR NAME MODULE VERSION: a module that requires MODULE at VERSION, to build its
# commands as dependencies (go install pkg@version refuses modules whose go.mod has replace directives,
# and one go build for several commands compiles shared packages once).
wrapper_module() {
  local dir=$1 name=$2 module=$3 version=$4
  rm -rf "$dir" && mkdir -p "$dir/out"
  printf 'module sandbox-webhook.local/%s\n\ngo %s\n\nrequire %s %s\n' \
    "$name" "$(go env GOVERSION | sed 's/^go//')" "$module" "$version" >"$dir/go.mod"
}

build_containerd() {
  local todo=() name
  for name in containerd ctr containerd-shim-runc-v2; do
    needed "$name" "$(asset_var "$name")" "$CONTAINERD_VERSION" && todo+=("$name")
  done
  [ ${#todo[@]} -gt 0 ] || return 0
  local mod=$work/containerd-$CONTAINERD_VERSION pkg=github.com/containerd/containerd/v2 start seconds
  wrapper_module "$mod" containerd-binaries "$pkg" "$CONTAINERD_VERSION"
  local ldflags="-s -w -X $pkg/version.Version=$CONTAINERD_VERSION -X $pkg/version.Revision=unknown -X $pkg/version.Package=$pkg"
  # The tags of containerd's own static release (its Makefile, STATIC=1); the shim adds no_grpc as
  # that Makefile does. With CGO off the btrfs snapshotter (cgo only) is left out.
  local tags="urfave_cli_no_docs osusergo netgo static_build" daemon=() shim=()
  for name in "${todo[@]}"; do
    case "$name" in
      containerd-shim-runc-v2) shim+=("$pkg/cmd/$name") ;;
      *) daemon+=("$pkg/cmd/$name") ;;
    esac
  done
  log "building ${todo[*]} $CONTAINERD_VERSION"
  start=$(date +%s)
  if [ ${#daemon[@]} -gt 0 ]; then
    (cd "$mod" && go build -trimpath -tags "$tags" -ldflags "$ldflags" -o out/ "${daemon[@]}")
  fi
  if [ ${#shim[@]} -gt 0 ]; then
    (cd "$mod" && go build -trimpath -tags "$tags no_grpc" -ldflags "$ldflags" -o out/ "${shim[@]}")
  fi
  seconds=$(($(date +%s) - start))
  for name in "${todo[@]}"; do install_binary "$name" "$mod/out/$name" "$CONTAINERD_VERSION" "$seconds"; done
}

build_gvisor() {
  local todo=() name
  for name in runsc containerd-shim-runsc-v1; do
    needed "$name" "$(asset_var "$name")" "$GVISOR_VERSION" && todo+=("$name")
  done
  [ ${#todo[@]} -gt 0 ] || return 0
  local mod=$work/gvisor-$GVISOR_VERSION start seconds pkgs=()
  wrapper_module "$mod" gvisor-binaries gvisor.dev/gvisor "$GVISOR_VERSION"
  for name in "${todo[@]}"; do
    case "$name" in
      runsc) pkgs+=(gvisor.dev/gvisor/runsc) ;;
      # The shim's main package is gvisor.dev/gvisor/shim; containerd finds a runtime type
      # io.containerd.runsc.v1 as the binary containerd-shim-runsc-v1.
      containerd-shim-runsc-v1) pkgs+=(gvisor.dev/gvisor/shim) ;;
    esac
  done
  log "building ${todo[*]} $GVISOR_VERSION"
  start=$(date +%s)
  (cd "$mod" && go build -trimpath -ldflags "-s -w -X gvisor.dev/gvisor/runsc/version.version=$GVISOR_VERSION" -o out/ "${pkgs[@]}")
  seconds=$(($(date +%s) - start))
  [ ! -e "$mod/out/shim" ] || mv "$mod/out/shim" "$mod/out/containerd-shim-runsc-v1"
  for name in "${todo[@]}"; do install_binary "$name" "$mod/out/$name" "$GVISOR_VERSION" "$seconds"; done
}

total_start=$(date +%s)
build_etcd
build_kubernetes
build_helm
if [ "$with_node" = 1 ]; then
  build_containerd
  build_gvisor
fi
log "done in $(($(date +%s) - total_start))s"
echo "$bin"
