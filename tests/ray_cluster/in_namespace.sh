#!/bin/bash
# Runs inside `unshare -n -p -f --mount-proc` (tests/test_ray_cluster.py): a network namespace of its
# own, so Ray's addresses are loopback only, and a PID namespace of its own, so that whatever
# happens every Ray process dies with this script (PID 1 of the namespace).
# Usage: in_namespace.sh PYTHON JUNIT_XML TEMP_DIR [pytest args...]
set -u
PYTHON=$1 JUNIT=$2 TEMP=$3
shift 3
RAY="$PYTHON -m ray.scripts.scripts"
export RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0
# The test machine's disk may be over Ray's 95% mark; these tests spill nothing.
export RAY_local_fs_capacity_threshold=0.999
ip link set lo up || { echo "cannot bring up lo in the test's network namespace"; exit 90; }
trap '$RAY stop --force > "$TEMP/stop.log" 2>&1' EXIT
# Two nodes of one CPU each; a custom resource names each node (node_a, node_b), and pyllm_slot
# (one per node) lets a pool of two actors take one node each.
$RAY start --head --node-ip-address=127.0.0.1 --port=6379 --num-cpus=1 \
    --resources='{"node_a": 1, "pyllm_slot": 1}' --object-store-memory=100000000 \
    --temp-dir="$TEMP/ray" --dashboard-host=127.0.0.1 --disable-usage-stats > "$TEMP/head.log" 2>&1 \
    || { echo "ray start --head failed:"; tail -30 "$TEMP/head.log"; exit 91; }
$RAY start --address=127.0.0.1:6379 --node-ip-address=127.0.0.1 --num-cpus=1 \
    --resources='{"node_b": 1, "pyllm_slot": 1}' --object-store-memory=100000000 > "$TEMP/worker.log" 2>&1 \
    || { echo "ray start (second node) failed:"; tail -30 "$TEMP/worker.log"; exit 92; }
export RAY_ADDRESS=127.0.0.1:6379
"$PYTHON" -m pytest -q -p no:cacheprovider -o python_files='cluster_*.py' --junitxml="$JUNIT" "$@"
