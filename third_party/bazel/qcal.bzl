"""Shared settings for qcal's BUILD.bazel files (the Bazel twin of qcal_target_defaults)."""

# CMake's QCAL_WARNINGS. -Werror is added with --config=werror (see .bazelrc), the
# twin of CMake's QCAL_WERROR=ON.
QCAL_COPTS = [
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
] + select({
    "//third_party/bazel:werror": ["-Werror"],
    "//conditions:default": [],
})

# CMake passes QCAL_TEST_DATA_DIR="<source dir>/tests/data". Bazel runs a test in
# the runfiles tree of this workspace, where //tests:test_data (a copy of
# tests/data) is at tests/data: the relative path works there, and also from the
# repository root.
QCAL_TEST_DEFINES = ['QCAL_TEST_DATA_DIR=\\"tests/data\\"']
QCAL_TEST_DATA = ["//tests:test_data"]


def _system_includes_impl(ctx):
    return [CcInfo(compilation_context = cc_common.create_compilation_context(
        system_includes = depset(ctx.attr.includes),
    ))]

system_includes = rule(
    implementation = _system_includes_impl,
    attrs = {"includes": attr.string_list(doc = "absolute directories, passed as -isystem")},
    doc = """Adds absolute -isystem directories to every dependent (like a CMake
SYSTEM PUBLIC include directory), which cc_library's `includes` cannot do.""",
)

def qcal_test(name, deps, srcs = None, data = [], local_defines = [], test_data = True, **kwargs):
    """One gtest executable and test, like the foreach loops in the CMakeLists.txt.

    Adds QCAL_COPTS and //third_party:gtest_main (GTest::gtest_main); with
    test_data (the default) also the QCAL_TEST_DATA_DIR define and tests/data as
    runfiles, for the tests whose CMake target defines QCAL_TEST_DATA_DIR.
    """
    native.cc_test(
        name = name,
        srcs = srcs if srcs != None else [name + ".cc"],
        copts = QCAL_COPTS,
        local_defines = (QCAL_TEST_DEFINES if test_data else []) + local_defines,
        data = (QCAL_TEST_DATA if test_data else []) + data,
        deps = deps + ["//third_party:gtest_main"],
        **kwargs
    )

def _copy_tree_impl(ctx):
    out = ctx.actions.declare_directory(ctx.attr.out)
    prefix = ctx.attr.strip_prefix
    cmds = ["set -eu"]
    for f in ctx.files.srcs:
        rel = f.short_path
        if not rel.startswith(prefix + "/"):
            fail("%s is not under %s" % (rel, prefix))
        dst = out.path + "/" + rel[len(prefix) + 1:]
        cmds.append("mkdir -p \"$(dirname '%s')\" && cp -L '%s' '%s'" % (dst, f.path, dst))
    ctx.actions.run_shell(
        inputs = ctx.files.srcs,
        outputs = [out],
        command = "\n".join(cmds),
        mnemonic = "CopyTree",
        progress_message = "Copying %d files to %s" % (len(ctx.files.srcs), out.short_path),
    )
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

copy_tree = rule(
    implementation = _copy_tree_impl,
    attrs = {
        "srcs": attr.label_list(allow_files = True, mandatory = True),
        "strip_prefix": attr.string(mandatory = True, doc = "package-relative folder of srcs"),
        "out": attr.string(mandatory = True, doc = "name of the output directory"),
    },
    doc = """Copies files into one output directory (a tree artifact) of real files.

In runfiles it is one symlink to a real directory, so canonical paths of the files
stay inside it (a filegroup's runfiles are symlinks to the source tree).""",
)
