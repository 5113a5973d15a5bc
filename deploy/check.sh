#!/usr/bin/env bash
# Checks what deploy/ and compose.yaml hand to operators, without a cluster:
# - the Prometheus config and alert rules (promtool check), and the alerts'
#   unit tests (promtool test rules deploy/alerts.test.yml);
# - the Kubernetes manifests in deploy/k8s against the Kubernetes API
#   schemas, strictly (kubernetes-validate, from PyPI, in $K8S_VENV);
# - compose.yaml against the Compose Specification's schema, and the
#   linter's rules but for key order (dclint, from npm, in $COMPOSE_LINT_DIR);
# - every SHOP_* variable the manifests and compose.yaml set is a setting
#   the shop reads (the README's settings table; `X_FILE` reads secret X).
#
#   deploy/check.sh
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VALIDATE_VERSION=1.37.0
venv=${K8S_VENV:-/var/tmp/shop-k8s-venv}
DCLINT_VERSION=3.1.0
linter=${COMPOSE_LINT_DIR:-/var/tmp/shop-dclint}

echo "==> alert rules and Prometheus config (promtool)"
promtool check rules deploy/alerts.yml
promtool check config deploy/prometheus.yml
promtool test rules deploy/alerts.test.yml

echo "==> Kubernetes manifests (kubernetes-validate --strict)"
if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$KUBERNETES_VALIDATE_VERSION"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
report=$("$venv/bin/kubernetes-validate" --strict deploy/k8s/*.yaml 2>&1) || { echo "$report" >&2; exit 1; }
echo "$(grep -c ' passed ' <<<"$report") resources valid"

echo "==> compose.yaml (dclint: Compose Specification schema and rules)"
if ! "$linter/node_modules/.bin/dclint" --version 2>/dev/null | grep -qx "$DCLINT_VERSION"; then
  npm install --silent --no-audit --no-fund --prefix "$linter" "dclint@$DCLINT_VERSION"
fi
# The file list first: --disable-rule takes every word after it.
"$linter/node_modules/.bin/dclint" compose.yaml --max-warnings 0 \
  --disable-rule service-keys-order services-alphabetical-order
echo "compose.yaml valid"

echo "==> SHOP_* variables in deploy/k8s and compose.yaml are settings"
known=$(grep -oE '`SHOP_[A-Z0-9_]+`' README.md | tr -d '`' | sort -u)
unknown=0
for name in $(grep -ohE 'SHOP_[A-Z0-9_]+' deploy/k8s/*.yaml compose.yaml | sort -u); do
  base=${name%_FILE}
  if ! grep -qx "$base" <<<"$known"; then
    echo "unknown setting $name" >&2
    unknown=1
  fi
done
[ "$unknown" -eq 0 ]
echo "deploy checks passed"
