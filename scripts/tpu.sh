#!/usr/bin/env bash
# Cloud TPU VM launcher: create a slice, install the project on every worker,
# start a run or a sweep on all workers, follow it, resume it, delete it.
#
#   export PROJECT=my-project ZONE=us-central2-b ACCELERATOR=v4-8 \
#          TPU_NAME=mobilenet BUCKET=gs://my-bucket
#   scripts/tpu.sh create          # queued resource (add SPOT=1 for spot)
#   scripts/tpu.sh setup           # copy this checkout, pip install
#   scripts/tpu.sh run 1.0 224     # one point of the paper's grid
#   scripts/tpu.sh sweep grid16    # a sweep from configs/sweeps/
#   scripts/tpu.sh logs            # follow worker 0
#   scripts/tpu.sh resume          # after a preemption: recreate, set up, rerun
#   scripts/tpu.sh delete
#
# Every worker runs the same command (--worker=all). Data is read from
# $TFDS_DATA_DIR (default $BUCKET/tensorflow_datasets, holding a prepared
# imagenet2012) and checkpoints go to $WORKDIR (default $BUCKET/mobilenet),
# which every host reaches. A rerun of the same command resumes from the
# latest checkpoint of each point.
set -euo pipefail

: "${PROJECT:?set PROJECT to your Google Cloud project}"
: "${ZONE:?set ZONE, e.g. us-central2-b (v4) or us-west4-a (v5e)}"
: "${BUCKET:?set BUCKET, e.g. gs://my-bucket}"
ACCELERATOR="${ACCELERATOR:-v4-8}"
TPU_NAME="${TPU_NAME:-mobilenet}"
TFDS_DATA_DIR="${TFDS_DATA_DIR:-$BUCKET/tensorflow_datasets}"
WORKDIR="${WORKDIR:-$BUCKET/mobilenet}"
CONFIG="${CONFIG:-configs/tpu.py}"
REMOTE_DIR='~/mobilenet_flax'
# The last command started, so that `resume` can start it again.
STATE_FILE="${STATE_FILE:-.tpu_last_command}"

runtime_version() {
  case "$ACCELERATOR" in
    v4-*) echo tpu-ubuntu2204-base ;;
    v5litepod-*) echo v2-alpha-tpuv5-lite ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    *) echo "unknown accelerator type $ACCELERATOR; set RUNTIME" >&2; exit 1 ;;
  esac
}
RUNTIME="${RUNTIME:-$(runtime_version)}"

gcloud_tpu() {
  gcloud compute tpus "$@" --project="$PROJECT" --zone="$ZONE"
}

on_all_workers() {
  gcloud_tpu tpu-vm ssh "$TPU_NAME" --worker=all --command="$1"
}

create() {
  local spot=()
  if [[ "${SPOT:-0}" == 1 ]]; then spot=(--spot); fi
  gcloud_tpu queued-resources create "$TPU_NAME" \
    --node-id="$TPU_NAME" \
    --accelerator-type="$ACCELERATOR" \
    --runtime-version="$RUNTIME" \
    "${spot[@]}"
  echo "Waiting for $TPU_NAME ($ACCELERATOR) to become ACTIVE..."
  until [[ "$(gcloud_tpu queued-resources describe "$TPU_NAME" \
      --format='value(state.state)')" == ACTIVE ]]; do
    sleep 30
  done
}

setup() {
  local archive
  archive="$(mktemp -d)/mobilenet_flax.tar.gz"
  git archive --format=tar.gz -o "$archive" HEAD
  gcloud_tpu tpu-vm scp "$archive" "$TPU_NAME:~/" --worker=all
  on_all_workers "mkdir -p $REMOTE_DIR && tar -xzf ~/mobilenet_flax.tar.gz \
    -C $REMOTE_DIR && cd $REMOTE_DIR && python3 -m venv .venv && \
    .venv/bin/pip install -q --upgrade pip && \
    .venv/bin/pip install -q -r requirements.txt && \
    .venv/bin/pip install -q 'jax[tpu]==0.10.2'"
}

# Starts $1 (a command run in the project directory) on every worker, in the
# background, so that it outlives the ssh session.
start() {
  echo "$1" >"$STATE_FILE"
  on_all_workers "cd $REMOTE_DIR && TFDS_DATA_DIR=$TFDS_DATA_DIR \
    nohup $1 >~/mobilenet_flax.log 2>&1 &"
  echo "Started on all workers of $TPU_NAME. Follow: scripts/tpu.sh logs"
}

run_point() {
  local alpha="${1:?alpha, e.g. 1.0}" res="${2:?resolution, e.g. 224}"
  start ".venv/bin/python main.py --config=$CONFIG:alpha=$alpha,res=$res \
    --workdir=$WORKDIR/alpha_${alpha}_res_${res}"
}

run_sweep() {
  local sweep="${1:?sweep name, e.g. grid16 (configs/sweeps/grid16.py)}"
  start ".venv/bin/python -m mobilenet_flax.sweep \
    --sweep=configs/sweeps/$sweep.py --config=$CONFIG --workdir=$WORKDIR"
}

resume() {
  [[ -f "$STATE_FILE" ]] || { echo "No earlier command in $STATE_FILE" >&2; exit 1; }
  local state
  state="$(gcloud_tpu queued-resources describe "$TPU_NAME" \
    --format='value(state.state)' 2>/dev/null || true)"
  if [[ "$state" != ACTIVE ]]; then
    # A preempted spot slice cannot come back: delete and queue it again.
    if [[ -n "$state" ]]; then
      gcloud_tpu queued-resources delete "$TPU_NAME" --force --quiet
    fi
    create
    setup
  fi
  start "$(cat "$STATE_FILE")"
}

case "${1:-}" in
  create) create ;;
  setup) setup ;;
  run) run_point "${2:-}" "${3:-}" ;;
  sweep) run_sweep "${2:-}" ;;
  logs) gcloud_tpu tpu-vm ssh "$TPU_NAME" --worker=0 \
      --command='tail -f ~/mobilenet_flax.log' ;;
  resume) resume ;;
  stop) on_all_workers "pkill -TERM -f 'main.py|mobilenet_flax.sweep' || true" ;;
  delete) gcloud_tpu queued-resources delete "$TPU_NAME" --force --quiet ;;
  *)
    sed -n '2,20p' "$0"
    exit 1
    ;;
esac
