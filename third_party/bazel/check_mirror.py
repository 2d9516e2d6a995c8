#!/usr/bin/env python3
"""Checks that the BUILD.bazel files mirror the CMake build, target by target.

CMake is the primary build. This configures it into a scratch directory (a few
seconds, nothing is compiled), reads every target from the CMake file API
(codemodel-v2) and every test from `ctest --show-only=json-v1`, reads the Bazel
rules with `bazel query --output=xml`, and reports each difference:

  * a CMake library/executable with no Bazel rule of the same name in the same
    folder (//<folder>:<name>), or the wrong kind (library -> cc_library, test ->
    cc_test, other executable or MODULE library -> cc_binary);
  * different sources (.cc/.cpp/.c files; generated ones, e.g. proto/qcal/v1/x.pb.cc,
    are compared by their path under the build directory);
  * a qcal library the CMake target links that the Bazel rule does not depend on
    (directly or transitively);
  * QCAL_TEST_DATA_DIR defined in CMake but not in Bazel (local_defines and the
    //tests:test_data runfiles), or the other way round;
  * a cc rule in Bazel with no CMake twin, unless it is tagged "bazel_only".

Usage: check_mirror.py [--bazel BAZEL] [--cmake CMAKE] [--strict]   (from the repo root)
Exit status 0 when the two builds match, 1 with a list of differences otherwise.
When CMake itself fails to configure, it says so and exits 0 (2 with --strict).
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

SOURCE_EXTS = (".cc", ".cpp", ".cxx", ".c")
CMAKE_KINDS = {"STATIC_LIBRARY", "SHARED_LIBRARY", "OBJECT_LIBRARY", "MODULE_LIBRARY",
               "EXECUTABLE"}
TEST_DATA_LABEL = "//tests:test_data"


def cmake_targets(cmake, src_dir):
    """Returns {(folder, name): info} for every library and executable of the CMake build."""
    build = tempfile.mkdtemp(prefix="qcal-mirror-")
    try:
        query = os.path.join(build, ".cmake", "api", "v1", "query")
        os.makedirs(query)
        open(os.path.join(query, "codemodel-v2"), "w").close()
        cmd = [cmake, "-S", src_dir, "-B", build,
               "-DQCAL_BUILD_TESTS=ON", "-DQCAL_BUILD_BENCH=ON"]
        if shutil.which("ninja"):
            cmd += ["-G", "Ninja"]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stdout)
            return None
        tests = json.loads(subprocess.run(
            ["ctest", "--show-only=json-v1"], cwd=build, check=True,
            stdout=subprocess.PIPE, text=True).stdout)
        test_names = {t["name"] for t in tests.get("tests", [])}

        reply = os.path.join(build, ".cmake", "api", "v1", "reply")
        codemodel = json.load(open(glob.glob(os.path.join(reply, "codemodel-v2-*.json"))[0]))
        config = codemodel["configurations"][0]
        raw = {}
        for ref in config["targets"]:
            t = json.load(open(os.path.join(reply, ref["jsonFile"])))
            if t["type"] not in CMAKE_KINDS:
                continue
            raw[t["id"]] = t
        targets = {}
        for t in raw.values():
            folder = t["paths"]["source"]
            folder = "" if folder == "." else folder
            sources = set()
            for s in t.get("sources", []):
                path = s["path"]
                if not path.endswith(SOURCE_EXTS):
                    continue
                if os.path.isabs(path):  # generated: compare its path in the build dir
                    path = os.path.relpath(path, build)
                sources.add(path)
            defines = set()
            for g in t.get("compileGroups", []):
                for d in g.get("defines", []):
                    defines.add(d["define"].split("=", 1)[0])
            deps = {raw[d["id"]]["name"] for d in t.get("dependencies", []) if d["id"] in raw}
            kind = "cc_library"
            if t["type"] == "EXECUTABLE":
                kind = "cc_test" if t["name"] in test_names else "cc_binary"
            elif t["type"] == "MODULE_LIBRARY":  # a dlopened object: cc_binary(linkshared)
                kind = "cc_binary"
            targets[(folder, t["name"])] = {
                "kind": kind, "sources": sources, "defines": defines, "deps": deps}
        return targets
    finally:
        shutil.rmtree(build, ignore_errors=True)


def bazel_rules(bazel):
    """Returns {label: info} for every cc rule of this workspace."""
    r = subprocess.run(
        [bazel, "query", "--output=xml", 'kind("(cc_(library|binary|test)|genrule) rule", //...)'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise SystemExit("check_mirror: bazel query failed")
    rules = {}
    generated_from = {}  # genrule output label -> the genrule's srcs
    for rule in ET.fromstring(r.stdout).iter("rule"):
        info = {"kind": rule.get("class"), "srcs": [], "deps": [], "data": [],
                "local_defines": [], "tags": []}
        for lst in rule.findall("list"):
            name = lst.get("name")
            if name in ("srcs", "deps", "data"):
                info[name] = [e.get("value") for e in lst.findall("label")]
            elif name in ("local_defines", "tags"):
                info[name] = [e.get("value") for e in lst.findall("string")]
        if info["kind"] == "genrule":
            for out in rule.findall("rule-output"):
                generated_from[out.get("name")] = info["srcs"]
            continue
        rules[rule.get("name")] = info
    # A source generated from a target (CMake: add_custom_command DEPENDS target,
    # e.g. qcal_text's embedded qcal_spm_shim) counts as a dependency on it.
    for info in rules.values():
        for s in info["srcs"]:
            info["deps"] = info["deps"] + generated_from.get(s, [])
    return rules


def label_path(label):
    """//proto:qcal/v1/x.pb.cc -> proto/qcal/v1/x.pb.cc"""
    pkg, name = label[2:].split(":", 1)
    return os.path.join(pkg, name) if pkg else name


def transitive_deps(rules, label, memo):
    if label in memo:
        return memo[label]
    memo[label] = set()
    out = set()
    for d in rules.get(label, {}).get("deps", []):
        out.add(d)
        out |= transitive_deps(rules, d, memo)
    memo[label] = out
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bazel", default="bazel")
    ap.add_argument("--cmake", default="cmake")
    ap.add_argument("--strict", action="store_true",
                    help="fail (exit 2) when CMake cannot be configured")
    args = ap.parse_args()
    src_dir = os.getcwd()

    cm = cmake_targets(args.cmake, src_dir)
    if cm is None:
        # The CMake build reports its own errors (scripts/test.sh configures it
        # first); without a CMake model there is nothing to compare with.
        print("check_mirror: CMake configure failed, comparison SKIPPED (fix CMake first)")
        return 2 if args.strict else 0
    bz = bazel_rules(args.bazel)
    by_name = {}
    for (folder, name) in cm:
        by_name.setdefault(name, []).append(folder)

    problems = []
    memo = {}
    for (folder, name), t in sorted(cm.items()):
        label = "//%s:%s" % (folder, name)
        rule = bz.get(label)
        if rule is None:
            problems.append("%s: CMake %s has no Bazel rule" % (label, t["kind"]))
            continue
        if rule["kind"] != t["kind"]:
            problems.append("%s: is a %s, CMake's target needs a %s"
                            % (label, rule["kind"], t["kind"]))
        srcs = {label_path(s) for s in rule["srcs"] if s.endswith(SOURCE_EXTS)}
        for s in sorted(t["sources"] - srcs):
            problems.append("%s: source %s is in CMake, not in Bazel" % (label, s))
        for s in sorted(srcs - t["sources"]):
            problems.append("%s: source %s is in Bazel, not in CMake" % (label, s))
        # add_dependencies (e.g. a test on the binaries it starts) -> data.
        reach = transitive_deps(bz, label, memo) | set(rule["data"])
        for dep in sorted(t["deps"]):
            folders = by_name.get(dep, [])
            if not any("//%s:%s" % (f, dep) in reach for f in folders):
                problems.append("%s: CMake links %s, the Bazel rule does not depend on it"
                                % (label, dep))
        cm_data = "QCAL_TEST_DATA_DIR" in t["defines"]
        bz_data = any(d.startswith("QCAL_TEST_DATA_DIR=") for d in rule["local_defines"])
        if cm_data != bz_data:
            problems.append("%s: QCAL_TEST_DATA_DIR is %s in CMake, %s in Bazel"
                            % (label, "defined" if cm_data else "not defined",
                               "defined" if bz_data else "not defined"))
        if bz_data and TEST_DATA_LABEL not in rule["data"]:
            problems.append("%s: defines QCAL_TEST_DATA_DIR but has no %s in data"
                            % (label, TEST_DATA_LABEL))

    mirrored = {"//%s:%s" % k for k in cm}
    for label, rule in sorted(bz.items()):
        if label.startswith("//third_party") or label in mirrored:
            continue
        if "bazel_only" not in rule["tags"]:
            problems.append("%s: Bazel %s with no CMake target (tag it \"bazel_only\" "
                            "if that is intended)" % (label, rule["kind"]))

    if problems:
        print("check_mirror: the Bazel build does not mirror CMake (%d difference%s):"
              % (len(problems), "" if len(problems) == 1 else "s"))
        for p in problems:
            print("  " + p)
        print("Update the BUILD.bazel files (docs/bazel.md).")
        return 1
    print("check_mirror: %d CMake targets, all mirrored in Bazel" % len(cm))
    return 0


if __name__ == "__main__":
    sys.exit(main())
