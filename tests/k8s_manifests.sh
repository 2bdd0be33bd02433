#!/usr/bin/env bash
# Kubernetes manifests: every static manifest (deploy/k8s, deploy/examples) and every object the
# controller generates (tests/tools/k8sgen: stage Deployments, Leases, SeiferModel status) is
# validated against the Kubernetes schemas (npm kubernetes-models), the SeiferModel CRD, and the
# checks of tests/tools/k8s_validate.mjs (unknown fields, names, references, stage rules, file
# order); the validator must also find every mistake planted in tests/kube/bad-manifests.yaml.
# Then, where kubectl exists, `kubectl apply -f deploy/k8s/` runs for real against the API server
# emulator (server-side and client-side apply). Skipped (exit 77) without node/npm or the npm
# registry; the packages are cached in CACHE.
# usage: k8s_manifests.sh SEIFER KUBEEMU K8SGEN CACHE
set -u
SEIFER=${1:?usage: $0 SEIFER KUBEEMU K8SGEN CACHE}
KUBEEMU=${2:?}
K8SGEN=${3:?}
CACHE=${4:?}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VALIDATE=$ROOT/tests/tools/k8s_validate.mjs
PKGS=(kubernetes-models@5.1.0 js-yaml@4.1.0 ajv@8.17.1 ajv-formats@3.0.1)

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm >/dev/null 2>&1
  fi
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "SKIP: node and npm are needed to validate the manifests"
  exit 77
fi
mkdir -p "$CACHE/npm"
if [ ! -f "$CACHE/npm/.installed-v1" ]; then
  echo "installing ${PKGS[*]} from npm into $CACHE/npm"
  (cd "$CACHE/npm" && npm install --silent --no-audit --no-fund --ignore-scripts "${PKGS[@]}" >/dev/null 2>&1) || {
    echo "SKIP: cannot install the validation packages from the npm registry"
    exit 77
  }
  touch "$CACHE/npm/.installed-v1"
fi
export NODE_MODULES=$CACHE/npm/node_modules

T=$(mktemp -d)
emu_pid=
cleanup() {
  [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null && wait "$emu_pid" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
fail=0

echo "== generated objects and static manifests"
"$K8SGEN" >"$T/generated.json" || { echo "FAIL: k8sgen"; exit 1; }
node "$VALIDATE" --crd "$ROOT/deploy/k8s/01-crd-seifermodel.yaml" --dir-order "$ROOT/deploy/k8s" \
  "$ROOT"/deploy/k8s/*.yaml "$ROOT"/deploy/examples/*.yaml "$T/generated.json" || fail=1
n_gen=$(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1])).length)' "$T/generated.json")
[ "$n_gen" -ge 8 ] || { echo "FAIL: k8sgen printed $n_gen objects"; fail=1; }

echo "== the validator finds every planted mistake"
node "$VALIDATE" --crd "$ROOT/deploy/k8s/01-crd-seifermodel.yaml" "$ROOT/tests/kube/bad-manifests.yaml" \
  >"$T/bad.out" 2>&1 && { echo "FAIL: bad manifests passed"; fail=1; }
while IFS= read -r want; do
  if grep -qF -- "$want" "$T/bad.out"; then echo "ok   caught: $want"
  else echo "FAIL: not caught: $want"; fail=1; fi
done < <(sed -n 's/^# expect: //p' "$ROOT/tests/kube/bad-manifests.yaml")
n_want=$(grep -c '^# expect: ' "$ROOT/tests/kube/bad-manifests.yaml")
n_got=$(grep -c '^FAIL' "$T/bad.out")
[ "$n_got" -eq "$n_want" ] || { echo "FAIL: $n_got problems reported for $n_want planted"; cat "$T/bad.out"; fail=1; }

if command -v kubectl >/dev/null && kubectl version --client >/dev/null 2>&1; then
  echo "== kubectl apply -f deploy/k8s/ against the API server emulator"
  echo "k8s-test-token" >"$T/token"
  "$KUBEEMU" --token-file "$T/token" --tls-dir "$T" --url-file "$T/url" --quiet &
  emu_pid=$!
  for _ in $(seq 100); do [ -s "$T/url" ] && break; sleep 0.05; done
  cat >"$T/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: emu
  cluster:
    server: $(cat "$T/url")
    certificate-authority: ca.crt
contexts:
- name: emu
  context: {cluster: emu, user: test}
current-context: emu
users:
- name: test
  user:
    token: k8s-test-token
KC
  K=(kubectl --kubeconfig "$T/kubeconfig" --request-timeout 20s)
  # the emulator serves no OpenAPI document: kubectl's own client-side schema check is off,
  # the schemas were checked above
  if "${K[@]}" apply --server-side --validate=false -f "$ROOT/deploy/k8s/" >"$T/apply.out" 2>&1 &&
     "${K[@]}" apply --validate=false -f "$ROOT/deploy/k8s/" >>"$T/apply.out" 2>&1 &&
     "${K[@]}" apply --server-side --validate=false -f "$ROOT/deploy/examples/" >>"$T/apply.out" 2>&1; then
    echo "ok   kubectl apply (server-side, then client-side) of deploy/k8s/ and deploy/examples/"
  else
    echo "FAIL: kubectl apply:"; cat "$T/apply.out"; fail=1
  fi
  for obj in namespace/seifer crd/seifermodels.seifer.dev -n\ seifer\ deploy/seifer-controller \
             -n\ seifer\ deploy/seifer-gateway -n\ seifer\ ds/seifer-probe -n\ seifer\ svc/seifer-gateway \
             -n\ seifer\ sfm/resnet50 clusterrole/seifer-controller-nodes; do
    # shellcheck disable=SC2086
    if "${K[@]}" get $obj -o name >/dev/null 2>&1; then echo "ok   kubectl get $obj"
    else echo "FAIL: kubectl get $obj"; fail=1; fi
  done
  kill "$emu_pid"; wait "$emu_pid" 2>/dev/null; emu_pid=
else
  echo "(kubectl not found: the apply against the emulator is left out)"
fi

if [ "$fail" -ne 0 ]; then echo "k8s_manifests: FAILED"; exit 1; fi
echo "k8s_manifests: all checks passed"
