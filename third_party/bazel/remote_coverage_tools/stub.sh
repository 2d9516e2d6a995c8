#!/bin/sh
echo "remote_coverage_tools is a stub (qcal builds offline); bazel coverage is not supported" >&2
exit 1
