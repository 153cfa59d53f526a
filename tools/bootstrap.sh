#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment: ROS 2 Jazzy wheels from PyPI, torch CPU,
# ONNX Runtime, rosbags, colcon, test tools; generates the interfaces of bore_depth_ros_msgs/ (and
# tools/tf2_msgs) into the venv; installs the bore_depth_ros Python
# package in editable mode. Idempotent and quick when nothing changed (a stamp of the inputs is kept).
# Usage: tools/bootstrap.sh            (venv in $BORE_VENV, default <repo>/.venv)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${BORE_VENV:-$repo/.venv}
py=${PYTHON:-python3}
quiet_pip() { python -m pip "$@" 2> >(grep -v "^WARNING: Location" >&2); }
log() { printf '[bootstrap] %s\n' "$*" >&2; }

inputs_hash() {
  { cat "$repo/requirements.txt" "$repo/package.xml" "$repo/setup.py" "$repo/setup.cfg" \
      "$repo"/resource/* "$repo"/bore_depth_ros_msgs/CMakeLists.txt "$repo"/bore_depth_ros_msgs/package.xml \
      "$repo"/bore_depth_ros_msgs/msg/*.msg "$repo"/tools/tf2_msgs/* "$repo/tools/bootstrap.sh" 2>/dev/null || true
  } | sha256sum | cut -c1-16
}
stamp="$venv/.bore_depth_ros_stamp"
want=$(inputs_hash)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
# Several shells may source tools/env.sh at once: one of them builds, the others wait for it.
if [[ -d "$venv" && -z "${_BORE_BOOTSTRAP_LOCKED:-}" ]] && command -v flock >/dev/null 2>&1; then
  export _BORE_BOOTSTRAP_LOCKED=1
  exec flock "$venv/.bootstrap.lock" bash "${BASH_SOURCE[0]}" "$@"
fi
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
  log "creating virtual environment $venv"
  "$py" -m venv "$venv"
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1
quiet_pip install -q -U pip "setuptools>=70" wheel
log "installing Python dependencies (requirements.txt)"
quiet_pip install -q -r "$repo/requirements.txt"
if ! command -v ninja >/dev/null 2>&1; then python -m pip install -q ninja; fi
command -v cmake >/dev/null 2>&1 || python -m pip install -q cmake

# The wheels' exported CMake files name include dirs of the machine that built them; point them here.
pyinc=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
npinc=$(python -c 'import numpy; print(numpy.get_include())')
{ grep -rl --include="*.cmake" -e "/opt/python/cp311-cp311" "$venv/share" 2>/dev/null || true; } | while read -r f; do
  sed -i -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$npinc#g" \
         -e "s#/opt/python/cp311-cp311/include/python3.11#$pyinc#g" "$f"
done

export AMENT_PREFIX_PATH="$venv"
build="$venv/.build"
cmake_pkg() {  # cmake_pkg <src> <name> [extra cmake args]
  local src=$1 name=$2; shift 2
  log "generating interfaces of $name"
  cmake -S "$src" -B "$build/$name" -G Ninja -DCMAKE_INSTALL_PREFIX="$venv" -DCMAKE_PREFIX_PATH="$venv" \
        -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF "$@" >"$build/$name.log" 2>&1 \
    && cmake --build "$build/$name" --target install >>"$build/$name.log" 2>&1 \
    || { log "building $name failed; see $build/$name.log"; tail -n 40 "$build/$name.log" >&2; exit 1; }
}
mkdir -p "$build"
sp=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# Until issue 11 the messages were generated as bore_depth_ros.msg by a CMake build of the repository
# root into this venv; remove what that build installed (its manifest lists it), so that no stale
# site-packages/bore_depth_ros directory or bore_depth_ros egg-info sits next to the editable install.
old_manifest="$build/bore_depth_ros/install_manifest.txt"
if [[ -f "$old_manifest" ]]; then
  log "removing the interfaces of the old bore_depth_ros CMake build (now bore_depth_ros_msgs)"
  grep "^$venv/" "$old_manifest" | while read -r f; do rm -f "$f"; done
  for d in "$sp/bore_depth_ros" "$sp/bore_depth_ros-0.1.0-py3.11.egg-info" "$venv/share/bore_depth_ros" \
           "$venv/include/bore_depth_ros"; do
    [[ -d "$d" ]] || continue
    find "$d" -depth -type d -name __pycache__ -exec rm -rf {} +
    find "$d" -depth -type d -empty -delete
  done
  rm -rf "$build/bore_depth_ros" "$build/bore_depth_ros.log"
fi
log "installing bore_depth_ros (editable)"
quiet_pip install -q --no-deps --no-build-isolation -e "$repo" --config-settings editable_mode=compat 2>&1 \
  | grep -v -E "BuildBackendWarning|transitional|!!|\*\*\*|editable mode|adapt your code|lenient|development_mode|_EditableMode|^\s*$" >&2 || true
if [[ -d "$repo/tools/tf2_msgs" ]]; then cmake_pkg "$repo/tools/tf2_msgs" tf2_msgs; fi
# The messages package, built the way colcon builds it on a robot, but installed into the venv.
cmake_pkg "$repo/bore_depth_ros_msgs" bore_depth_ros_msgs

python - <<'PY'
import bore_depth_ros_msgs.msg, rclpy  # noqa: F401  (fails loudly if the set-up is incomplete)
PY
echo "$want" >"$stamp"
log "environment ready: $venv"
