# Source this file to use the project's environment in a shell:  . tools/env.sh
# Sets up the venv (creating it on first use) and the ROS 2 variables this project relies on.
_bore_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$_bore_repo/tools/bootstrap.sh" || return 1 2>/dev/null || exit 1
# shellcheck disable=SC1091
. "${BORE_VENV:-$_bore_repo/.venv}/bin/activate"
export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# Never let DDS discovery leave this machine; pick a domain of our own unless one is set.
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( ($$ % 100) + 101 ))}
# Large images over Fast DDS: shared memory + loopback UDP (see config/fastdds_profile.xml).
export FASTRTPS_DEFAULT_PROFILES_FILE=${FASTRTPS_DEFAULT_PROFILES_FILE:-$_bore_repo/config/fastdds_profile.xml}
export ROS_LOG_DIR=${ROS_LOG_DIR:-${TMPDIR:-/tmp}/bore_depth_ros_logs}
export BORE_DEPTH_CACHE=${BORE_DEPTH_CACHE:-$_bore_repo/.cache}
unset _bore_repo
