#!/usr/bin/env bash
# Builds a one-layer OCI image archive around a static busybox binary, for nodes that have no registry to
# pull from (test/e2e-node imports it with `ctr -n k8s.io images import` and runs it with
# imagePullPolicy: Never). The layer holds /bin/busybox and a symlink per applet listed below.
#
#   hack/build-test-image.sh BUSYBOX OUT.tar NAME [ENTRYPOINT ARG...]
#
#   BUSYBOX     a statically linked busybox (hack/fetch-node-debs.sh unpacks Debian's busybox-static)
#   OUT.tar     the OCI image layout archive to write (index.json, oci-layout, blobs/sha256/...)
#   NAME        the image reference recorded in the archive, e.g. sandbox-webhook.local/busybox:1.35.0
#   ENTRYPOINT  the image's entrypoint (none when omitted: the pod gives a command)
#
# The archive is reproducible: the same busybox gives the same digests.
set -euo pipefail

[ $# -ge 3 ] || { sed -n '2,14p' "$0" >&2; exit 2; }
busybox=$1
out=$2
name=$3
shift 3
[ -x "$busybox" ] || { echo "build-test-image.sh: $busybox is not an executable" >&2; exit 1; }
if command -v file >/dev/null 2>&1 && ! file -L "$busybox" | grep -q 'statically linked'; then
  echo "build-test-image.sh: $busybox is not statically linked" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/root/bin" "$work/root/tmp" "$work/root/proc" "$work/root/sys" "$work/root/dev" "$work/root/etc" \
  "$work/layout/blobs/sha256"
cp "$busybox" "$work/root/bin/busybox"
for applet in sh cat dmesg echo env grep head hostname id ls mkdir ps sleep tail true uname wc; do
  ln -s busybox "$work/root/bin/$applet"
done
echo 'root:x:0:0:root:/:/bin/sh' >"$work/root/etc/passwd"
echo 'root:x:0:' >"$work/root/etc/group"
chmod 1777 "$work/root/tmp"

blob() { # blob FILE: moves FILE into the layout under its digest; prints "sha256:<hex> <size>"
  local hex size
  hex=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mv "$1" "$work/layout/blobs/sha256/$hex"
  echo "sha256:$hex $size"
}
tar_reproducibly() { # tar_reproducibly DIR OUT
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -C "$1" -cf "$2" .
}

tar_reproducibly "$work/root" "$work/layer.tar"
read -r layer_digest layer_size < <(blob "$work/layer.tar")

entrypoint=null
if [ $# -gt 0 ]; then
  entrypoint="[$(printf '"%s",' "$@" | sed 's/,$//')]"
fi
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Entrypoint":%s,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
  "$entrypoint" "$layer_digest" >"$work/config.json"
read -r config_digest config_size < <(blob "$work/config.json")

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
  "$config_digest" "$config_size" "$layer_digest" "$layer_size" >"$work/manifest.json"
read -r manifest_digest manifest_size < <(blob "$work/manifest.json")

# io.containerd.image.name is the name `ctr images import` gives the image.
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest_digest" "$manifest_size" "$name" "${name##*:}" >"$work/layout/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
tar_reproducibly "$work/layout" "$out"
echo "build-test-image.sh: $name ($manifest_digest) -> $out" >&2
