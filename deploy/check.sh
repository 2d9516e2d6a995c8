#!/usr/bin/env bash
# Static checks of deploy/: runs what is installed, skips the rest with a note.
#  - yamllint: deploy/k8s with deploy/.yamllint (Debian: yamllint)
#  - lint_manifests: offline render and consistency checks of deploy/k8s (python3-yaml)
#  - shellcheck of this script (Debian: shellcheck)
#  - hadolint: deploy/docker/Dockerfile.* (not in Debian)
#  - kustomize: build of the base, of base + all components, of each overlay
#    (kustomize, or kubectl >= 1.21 for `kubectl kustomize`); lint_manifests then
#    checks those renderings too
#  - kubeconform: schemas of those renderings, or of the plain manifests (not in
#    Debian; KUBECONFORM_FLAGS adds flags, e.g. -schema-location for offline schemas)
#  - docker --check: Dockerfile build checks, no build (Docker with buildx >= 0.15)
# Exit status 1 if any check that ran failed. Not part of CI.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
DEPLOY=deploy
K8S=deploy/k8s
failed=()
ran=()
skipped=()

have() { command -v "$1" >/dev/null 2>&1; }
run() { # run NAME CMD...: runs a check and records its result
  local name=$1
  shift
  echo "== $name"
  if "$@"; then ran+=("$name"); else failed+=("$name"); fi
}
skip() { echo "== $1: skipped ($2)"; skipped+=("$1"); }

if have yamllint; then
  run yamllint yamllint -c "$DEPLOY/.yamllint" -s "$K8S"
else
  skip yamllint "apt-get install yamllint"
fi

if have python3 && python3 -c 'import yaml' 2>/dev/null; then
  run lint_manifests python3 "$DEPLOY/lint_manifests.py" "$K8S"
else
  skip lint_manifests "needs python3 and python3-yaml"
fi

if have shellcheck; then
  run shellcheck shellcheck "$DEPLOY/check.sh"
else
  skip shellcheck "apt-get install shellcheck"
fi

if have hadolint; then
  run hadolint hadolint "$DEPLOY"/docker/Dockerfile.coordinator \
    "$DEPLOY"/docker/Dockerfile.worker "$DEPLOY"/docker/Dockerfile.cli
else
  skip hadolint "not installed"
fi

# Renders with kustomize: base, base + every component, and each overlay (copied to a
# scratch folder with dummy token files so its secretGenerator has input).
kustomize_cmd=()
if have kustomize; then
  kustomize_cmd=(kustomize build)
elif have kubectl; then
  # kubectl >= 1.21 embeds a kustomize with components (Debian's 1.20 does not).
  minor=$(kubectl version --client -o json 2>/dev/null |
    sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' | head -n 1)
  if [ "${minor:-0}" -ge 21 ]; then kustomize_cmd=(kubectl kustomize); fi
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
rendered=()
render_all() {
  local rel out ov dir
  "${kustomize_cmd[@]}" "$K8S" >"$scratch/base.yaml" || return 1
  rendered+=("$scratch/base.yaml")
  # kustomize wants relative paths to other kustomization roots.
  mkdir -p "$scratch/all-components"
  rel=$(realpath --relative-to="$scratch/all-components" "$K8S")
  {
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources: [$rel]"
    echo "components:"
    for dir in "$K8S"/components/*/; do
      echo "  - $(realpath --relative-to="$scratch/all-components" "$dir")"
    done
  } >"$scratch/all-components/kustomization.yaml"
  "${kustomize_cmd[@]}" "$scratch/all-components" >"$scratch/all-components.yaml" || return 1
  rendered+=("$scratch/all-components.yaml")
  for ov in "$K8S"/overlays/*/; do
    ov=${ov%/}
    out="$scratch/overlay-$(basename "$ov")"
    cp -r "$ov" "$out"
    rel=$(realpath --relative-to="$out" "$K8S")
    sed -i "s#^  - \.\./\.\.\$#  - $rel#; s#\.\./\.\./components/#$rel/components/#" \
      "$out/kustomization.yaml"
    mkdir -p "$out/secrets"
    echo dummy >"$out/secrets/client-token"
    echo dummy >"$out/secrets/worker-token"
    "${kustomize_cmd[@]}" "$out" >"$out.yaml" || return 1
    rendered+=("$out.yaml")
  done
  echo "rendered: ${rendered[*]}"
}
if [ ${#kustomize_cmd[@]} -gt 0 ]; then
  run kustomize render_all
  if [ ${#rendered[@]} -gt 0 ] && have python3 && python3 -c 'import yaml' 2>/dev/null; then
    run "lint_manifests (kustomize output)" \
      python3 "$DEPLOY/lint_manifests.py" --rendered "${rendered[@]}"
  fi
else
  skip kustomize "neither kustomize nor a recent kubectl"
fi

if have kubeconform; then
  # shellcheck disable=SC2086  # KUBECONFORM_FLAGS is a list of flags
  if [ ${#rendered[@]} -gt 0 ]; then
    run kubeconform kubeconform -strict -summary ${KUBECONFORM_FLAGS:-} "${rendered[@]}"
  else
    mapfile -t plain < <(find "$K8S" -name '*.yaml' ! -name kustomization.yaml \
      ! -path '*/components/tls/*-tls.yaml' | sort)
    run kubeconform kubeconform -strict -summary ${KUBECONFORM_FLAGS:-} "${plain[@]}"
  fi
else
  skip kubeconform "not installed"
fi

if have docker && docker buildx build --help 2>/dev/null | grep -q -- '--check'; then
  docker_check() {
    local f
    for f in coordinator worker cli; do
      docker buildx build --check -f "$DEPLOY/docker/Dockerfile.$f" . || return 1
    done
  }
  run "docker --check" docker_check
else
  skip "docker --check" "needs docker buildx >= 0.15"
fi

echo
echo "ran: ${ran[*]:-none}"
echo "skipped: ${skipped[*]:-none}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "deploy/check.sh: OK"
