#!/usr/bin/env python3
"""Offline consistency checks of deploy/k8s, for machines without kubectl or kustomize.

Renders each kustomization the way kustomize would for the features used here
(resources, components, JSON 6902 patches, images, namespace, secretGenerator), then
checks what a schema validator cannot: selectors match pod labels, every mount has a
volume, named probe/Service ports exist, $(VAR) arguments have an env entry, referenced
Secrets/PVCs/Services exist, the pods satisfy the "restricted" Pod Security Standard,
and nothing hard-codes a namespace. Needs only python3 and PyYAML (python3-yaml,
which yamllint depends on).

Usage: python3 deploy/lint_manifests.py [deploy/k8s]    exit status 1 on any error
       python3 deploy/lint_manifests.py --rendered FILE...
           checks output of `kustomize build` instead of rendering it here
"""
import copy
import os
import sys

import yaml

ERRORS = []


def error(where, msg):
    ERRORS.append(f"{where}: {msg}")


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def is_kustomization_dir(path):
    return os.path.isfile(os.path.join(path, "kustomization.yaml"))


def json_pointer_apply(doc, op, where):
    """Applies one JSON 6902 operation (add, replace, remove) in place."""
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    parent = doc
    for p in parts[:-1]:
        try:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        except (KeyError, IndexError, ValueError, TypeError):
            error(where, f"patch path {op['path']}: '{p}' does not exist")
            return
    last = parts[-1]
    kind = op["op"]
    if isinstance(parent, list):
        if kind == "add" and last == "-":
            parent.append(copy.deepcopy(op["value"]))
            return
        try:
            i = int(last)
        except ValueError:
            error(where, f"patch path {op['path']}: '{last}' is not a list index")
            return
        if kind == "add" and 0 <= i <= len(parent):
            parent.insert(i, copy.deepcopy(op["value"]))
        elif kind in ("replace", "remove") and 0 <= i < len(parent):
            if kind == "replace":
                parent[i] = copy.deepcopy(op["value"])
            else:
                del parent[i]
        else:
            error(where, f"patch path {op['path']}: index {i} out of range")
        return
    if not isinstance(parent, dict):
        error(where, f"patch path {op['path']}: parent is not an object")
    elif kind == "add":
        parent[last] = copy.deepcopy(op["value"])
    elif kind in ("replace", "remove"):
        if last not in parent:
            error(where, f"patch path {op['path']}: '{last}' does not exist ({kind})")
        elif kind == "replace":
            parent[last] = copy.deepcopy(op["value"])
        else:
            del parent[last]
    else:
        error(where, f"patch op '{kind}' not supported by this checker")


def matches_target(obj, target):
    if "kind" in target and obj.get("kind") != target["kind"]:
        return False
    if "name" in target and obj.get("metadata", {}).get("name") != target["name"]:
        return False
    if "group" in target:
        group = obj.get("apiVersion", "").rpartition("/")[0]
        if group != target["group"]:
            return False
    return True


def render(kdir, seen=None):
    """Returns the objects a kustomization (or component) directory produces."""
    seen = set() if seen is None else seen
    kdir = os.path.normpath(kdir)
    if kdir in seen:
        error(kdir, "kustomization cycle")
        return []
    seen = seen | {kdir}
    kfile = os.path.join(kdir, "kustomization.yaml")
    k = load_docs(kfile)[0]
    objs = []
    for res in k.get("resources", []):
        path = os.path.join(kdir, res)
        if os.path.isdir(path):
            if not is_kustomization_dir(path):
                error(kfile, f"resource {res} is a directory without kustomization.yaml")
                continue
            objs.extend(render(path, seen))
        elif os.path.isfile(path):
            objs.extend(load_docs(path))
        else:
            error(kfile, f"resource {res} does not exist")
    for gen in k.get("secretGenerator", []):
        data = {}
        for spec in gen.get("files", []):
            key, _, rel = spec.partition("=") if "=" in spec else (os.path.basename(spec), "", spec)
            data[key] = "(from %s)" % rel  # the files are local secrets; they may be absent
        objs.append({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                     "metadata": {"name": gen["name"]}, "stringData": data})
    for comp in k.get("components", []):
        path = os.path.join(kdir, comp)
        ck = os.path.join(path, "kustomization.yaml")
        if not os.path.isfile(ck):
            error(kfile, f"component {comp} has no kustomization.yaml")
            continue
        if load_docs(ck)[0].get("kind") != "Component":
            error(ck, "listed under components: but kind is not Component")
        objs = apply_component(path, objs, seen)
    objs = apply_patches(kdir, k, objs)
    for img in k.get("images", []):
        hit = False
        for obj in objs:
            for c in all_containers(obj):
                name, _, tag = c.get("image", "").partition(":")
                if name == img["name"]:
                    hit = True
                    c["image"] = img.get("newName", name) + ":" + img.get("newTag", tag)
        if not hit:
            error(kfile, f"images: {img['name']} matches no container")
    if "namespace" in k:
        for obj in objs:
            if obj.get("kind") != "Namespace":
                obj.setdefault("metadata", {})["namespace"] = k["namespace"]
    return objs


def apply_component(cdir, objs, seen):
    ck = os.path.join(cdir, "kustomization.yaml")
    c = load_docs(ck)[0]
    objs = list(objs)
    for res in c.get("resources", []):
        path = os.path.join(cdir, res)
        if os.path.isfile(path):
            objs.extend(load_docs(path))
        elif os.path.isdir(path):
            objs.extend(render(path, seen))
        else:
            error(ck, f"resource {res} does not exist")
    return apply_patches(cdir, c, objs)


def apply_patches(kdir, k, objs):
    kfile = os.path.join(kdir, "kustomization.yaml")
    for patch in k.get("patches", []):
        if "path" in patch:
            ppath = os.path.join(kdir, patch["path"])
            if not os.path.isfile(ppath):
                error(kfile, f"patch file {patch['path']} does not exist")
                continue
            ops = load_docs(ppath)[0]
            where = ppath
        else:
            ops = yaml.safe_load(patch["patch"])
            where = kfile + " (inline patch)"
        if not isinstance(ops, list):
            error(where, "only JSON 6902 patches (lists of ops) are checked here")
            continue
        target = patch.get("target", {})
        hits = [o for o in objs if matches_target(o, target)]
        if not hits:
            error(where, f"patch target {target} matches nothing")
        for obj in hits:
            for op in ops:
                json_pointer_apply(obj, op, where)
    return objs


def pod_spec(obj):
    kind = obj.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return obj.get("spec", {}).get("template", {}).get("spec")
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind == "Pod":
        return obj.get("spec")
    return None


def all_containers(obj):
    spec = pod_spec(obj) or {}
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def name_of(obj):
    md = obj.get("metadata", {})
    return f"{obj.get('kind')}/{md.get('name') or md.get('generateName', '?') + '*'}"


def check_workload(obj, where, secrets, pvcs):
    spec = pod_spec(obj)
    tmpl_labels = obj["spec"]["template"].get("metadata", {}).get("labels", {})
    if obj["kind"] != "Job":
        sel = obj["spec"].get("selector", {}).get("matchLabels", {})
        if not sel:
            error(where, "no spec.selector.matchLabels")
        for key, val in sel.items():
            if tmpl_labels.get(key) != val:
                error(where, f"selector {key}={val} not in the pod template labels")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    claim_templates = {t["metadata"]["name"]
                       for t in obj["spec"].get("volumeClaimTemplates", [])}
    used = set()
    psc = spec.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        error(where, "pod securityContext.runAsNonRoot is not true")
    if psc.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
        error(where, "pod seccompProfile is not RuntimeDefault")
    if spec.get("automountServiceAccountToken") is not False:
        error(where, "automountServiceAccountToken is not false")
    for c in all_containers(obj):
        cw = f"{where} container {c['name']}"
        if ":" not in c.get("image", "") or c["image"].endswith(":latest"):
            error(cw, f"image {c.get('image')!r} has no fixed tag")
        csc = c.get("securityContext", {})
        if csc.get("allowPrivilegeEscalation") is not False:
            error(cw, "allowPrivilegeEscalation is not false")
        if csc.get("readOnlyRootFilesystem") is not True:
            error(cw, "readOnlyRootFilesystem is not true")
        if "ALL" not in csc.get("capabilities", {}).get("drop", []):
            error(cw, "capabilities do not drop ALL")
        if "limits" not in c.get("resources", {}) or "requests" not in c.get("resources", {}):
            error(cw, "resources need requests and limits")
        port_names = [p.get("name") for p in c.get("ports", []) if p.get("name")]
        if len(port_names) != len(set(port_names)):
            error(cw, "duplicate port names")
        for m in c.get("volumeMounts", []):
            used.add(m["name"])
            if m["name"] not in volumes and m["name"] not in claim_templates:
                error(cw, f"volumeMount {m['name']} has no volume")
        env_names = {e["name"] for e in c.get("env", [])}
        for arg in c.get("args", []) + c.get("command", []):
            rest = str(arg)
            while "$(" in rest:
                var = rest.split("$(", 1)[1].split(")", 1)[0]
                if var not in env_names:
                    error(cw, f"argument {arg!r} uses $({var}) but no env {var}")
                rest = rest.split("$(", 1)[1]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            p = c.get(probe)
            if not p:
                continue
            if "grpc" in p and not isinstance(p["grpc"].get("port"), int):
                error(cw, f"{probe}: grpc.port must be a number (names are not allowed)")
            for handler in ("tcpSocket", "httpGet"):
                port = p.get(handler, {}).get("port")
                if isinstance(port, str) and port not in port_names:
                    error(cw, f"{probe}: {handler} port {port} is not a container port")
    for name, v in volumes.items():
        if name not in used:
            error(where, f"volume {name} is never mounted")
        if "secret" in v:
            secrets.setdefault(v["secret"]["secretName"], []).append(where)
        if "persistentVolumeClaim" in v:
            pvcs.setdefault(v["persistentVolumeClaim"]["claimName"], []).append(where)
    return tmpl_labels


def check(objs, label, extra=(), external_secrets=()):
    """Checks one rendered set; `extra` objects (examples) are checked against it."""
    by_kind = {}
    for obj in list(objs) + list(extra):
        if not isinstance(obj, dict) or "kind" not in obj or "apiVersion" not in obj:
            error(label, f"document without apiVersion/kind: {str(obj)[:60]}")
            continue
        by_kind.setdefault(obj["kind"], []).append(obj)
    names = {}
    for obj in objs:
        key = (obj["kind"], obj.get("metadata", {}).get("name"))
        if key in names:
            error(label, f"{key[0]}/{key[1]} defined twice")
        names[key] = obj
    secrets, pvcs, pod_labels = {}, {}, {}
    for obj in list(objs) + list(extra):
        where = f"{label}: {name_of(obj)}"
        if pod_spec(obj) is not None:
            pod_labels[name_of(obj)] = (
                check_workload(obj, where, secrets, pvcs), all_containers(obj), obj)
    defined_secrets = {o["metadata"]["name"] for o in by_kind.get("Secret", [])}
    for s, users in secrets.items():
        if s not in defined_secrets and s not in external_secrets:
            error(label, f"Secret {s} (used by {', '.join(sorted(set(users)))}) is not defined")
    defined_pvcs = {o["metadata"]["name"] for o in by_kind.get("PersistentVolumeClaim", [])}
    for p, users in pvcs.items():
        if p not in defined_pvcs:
            error(label, f"PVC {p} (used by {', '.join(sorted(set(users)))}) is not defined")
    for svc in by_kind.get("Service", []):
        where = f"{label}: {name_of(svc)}"
        sel = svc["spec"].get("selector", {})
        targets = [(n, cs) for n, (labels, cs, _) in pod_labels.items()
                   if all(labels.get(k) == v for k, v in sel.items())]
        if not targets:
            error(where, f"selector {sel} matches no pod template")
        for port in svc["spec"].get("ports", []):
            tp = port.get("targetPort", port.get("port"))
            if isinstance(tp, str):
                for n, cs in targets:
                    if not any(p.get("name") == tp for c in cs for p in c.get("ports", [])):
                        error(where, f"targetPort {tp} is not a port of {n}")
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    for sts in by_kind.get("StatefulSet", []):
        sn = sts["spec"].get("serviceName")
        if sn not in services:
            error(f"{label}: {name_of(sts)}", f"serviceName {sn} is not a Service here")
        elif services[sn]["spec"].get("clusterIP") != "None":
            error(f"{label}: {name_of(sts)}", f"serviceName {sn} is not headless")
    for pdb in by_kind.get("PodDisruptionBudget", []):
        sel = pdb["spec"]["selector"]["matchLabels"]
        if not any(all(labels.get(k) == v for k, v in sel.items())
                   for labels, _, _ in pod_labels.values()):
            error(f"{label}: {name_of(pdb)}", "selector matches no pod template")
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        ref = hpa["spec"]["scaleTargetRef"]
        target = names.get((ref["kind"], ref["name"]))
        if target is None:
            error(f"{label}: {name_of(hpa)}", f"scaleTargetRef {ref['name']} not found")
        elif "replicas" in target["spec"]:
            error(f"{label}: {name_of(hpa)}", "target still sets spec.replicas")
    for obj in objs:
        ns = obj.get("metadata", {}).get("namespace")
        if label.startswith("base") and ns:
            error(f"{label}: {name_of(obj)}", "hard-codes a namespace")


def finish():
    if ERRORS:
        for e in ERRORS:
            print("ERROR " + e, file=sys.stderr)
        print(f"lint_manifests: {len(ERRORS)} error(s)", file=sys.stderr)
        return 1
    print("lint_manifests: OK")
    return 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--rendered":
        for path in sys.argv[2:]:
            objs = load_docs(path)
            # Rendered overlays carry their namespace; the base must not.
            label = "base" if os.path.basename(path) == "base.yaml" else path
            check(objs, label, external_secrets=("qcal-client-token", "qcal-worker-token",
                                                 "qcal-tls"))
            print(f"{path}: {len(objs)} objects")
        return finish()
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "k8s")
    token_secrets = ("qcal-client-token", "qcal-worker-token")
    base = render(root)
    print(f"base: {len(base)} objects: {', '.join(name_of(o) for o in base)}")
    examples_dir = os.path.join(root, "examples")
    examples = []
    if os.path.isdir(examples_dir):
        for f in sorted(os.listdir(examples_dir)):
            if f.endswith((".yaml", ".yml")):
                examples.extend(load_docs(os.path.join(examples_dir, f)))
    # Token Secrets are created out of band for the base (secrets.example.yaml).
    check(base, "base", examples, external_secrets=token_secrets)
    example_secrets = load_docs(os.path.join(root, "secrets.example.yaml"))
    check(base + example_secrets, "base+secrets.example", examples)
    comps_dir = os.path.join(root, "components")
    comps = sorted(d for d in os.listdir(comps_dir)) if os.path.isdir(comps_dir) else []
    all_comps = copy.deepcopy(base)
    for comp in comps:
        one = apply_component(os.path.join(comps_dir, comp), copy.deepcopy(base), set())
        check(one, f"base+{comp}", external_secrets=token_secrets + ("qcal-tls",))
        all_comps = apply_component(os.path.join(comps_dir, comp), all_comps, set())
        print(f"component {comp}: {len(one)} objects")
    check(all_comps, "base+all-components", external_secrets=token_secrets + ("qcal-tls",))
    overlays_dir = os.path.join(root, "overlays")
    if os.path.isdir(overlays_dir):
        for ov in sorted(os.listdir(overlays_dir)):
            objs = render(os.path.join(overlays_dir, ov))
            check(objs, f"overlay {ov}")
            print(f"overlay {ov}: {len(objs)} objects")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
