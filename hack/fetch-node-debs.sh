#!/usr/bin/env bash
# Fetches the Debian packages a test node needs beside what hack/build-binaries.sh --with-node builds,
# and unpacks them into the build cache (no dpkg install, nothing outside the cache is changed):
#   runc                         the OCI runtime of ordinary (runc) pods. Taken from Debian, not built:
#                                runc needs cgo and libseccomp, and the binary a Debian node runs is the
#                                honest one to test against;
#   containernetworking-plugins  bridge, host-local and loopback for pod networking (the versions a Debian
#                                node gets; building them would add a pin and minutes for no gain);
#   busybox-static               the one static binary the local test image is made of
#                                (hack/build-test-image.sh).
#
#   hack/fetch-node-debs.sh [--force]
#
# Output: <cache>/node-debs/<package>/ (the package's files, e.g. .../runc/usr/sbin/runc), with a stamp
# <cache>/node-debs/.<package>.version. The cache is the one hack/build-binaries.sh uses. Packages are
# pinned to the versions below; `apt-get download` needs the apt lists (run as root, the script reads
# them with apt-get update when a download fails) but no root.
# The last line printed is the node-debs directory.
set -euo pipefail

# Debian 12 (bookworm) versions. A point release that replaces one makes `apt-get download` fail with
# the package and version named: update the pin then.
PACKAGES=(
  runc=1.1.5+ds1-1+deb12u1
  containernetworking-plugins=1.1.1+ds1-3+b5
  busybox-static=1:1.35.0-4+deb12u1+b1
)

force=0
case "${1:-}" in
  --force) force=1 ;;
  '') ;;
  -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
  *) echo "fetch-node-debs.sh: unknown argument: $1" >&2; exit 2 ;;
esac

cache=${SANDBOX_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandbox-webhook}
out=$cache/node-debs
updated=0
mkdir -p "$out/download"
command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 ||
  { echo "fetch-node-debs.sh: apt-get and dpkg-deb are required (a Debian or Ubuntu host)" >&2; exit 1; }

for spec in "${PACKAGES[@]}"; do
  name=${spec%%=*}
  version=${spec#*=}
  if [ "$force" = 0 ] && [ "$(cat "$out/.$name.version" 2>/dev/null)" = "$version" ]; then
    echo "fetch-node-debs.sh: $name $version already unpacked" >&2
    continue
  fi
  rm -f "$out/download/${name}_"*.deb
  download() { (cd "$out/download" && apt-get download -q "$name=$version"); }
  # A fresh machine may have no package lists yet: as root, read them once and try again.
  if ! download && ! { [ "$(id -u)" = 0 ] && [ "$updated" = 0 ] && updated=1 && apt-get update -q >&2 && download; }; then
    echo "fetch-node-debs.sh: cannot download $name=$version (run apt-get update, or update the pin)" >&2
    exit 1
  fi
  rm -rf "$out/$name"
  dpkg-deb -x "$out/download/${name}_"*.deb "$out/$name"
  echo "$version" >"$out/.$name.version"
  echo "fetch-node-debs.sh: $name $version unpacked" >&2
done
echo "$out"
