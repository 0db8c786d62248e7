// Prints the control-plane binaries the end-to-end tests would use, as shell assignments, resolved by
// the same code as the tests (test/e2e/harness/binaries.ts); builds nothing.
//
//   npx tsx hack/binaries-env.ts            # KUBE_APISERVER=/path ... (missing ones commented out)
//   eval "$(npx tsx hack/binaries-env.ts)"   # then "$KUBECTL" version, "$HELM" template ...
import { BINARY_NAMES, cacheDir, overrideVariable, pinnedVersions, resolveBinary } from '../test/e2e/harness/binaries.js';

const pins = pinnedVersions();
console.log(`# pinned: kubernetes ${pins.kubernetes}, etcd ${pins.etcd}, helm ${pins.helm}; cache ${cacheDir()}`);
for (const name of BINARY_NAMES) {
  const variable = overrideVariable(name).replace(/^TEST_ASSET_/, '');
  const resolved = resolveBinary(name);
  if (resolved) console.log(`${variable}=${JSON.stringify(resolved.path)} # from ${resolved.source}`);
  else console.log(`# ${variable}: not found; run hack/build-binaries.sh or set ${overrideVariable(name)}`);
}
