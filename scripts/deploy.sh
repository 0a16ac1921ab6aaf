#!/usr/bin/env bash
# deploy.sh: cifar100 on Amazon SageMaker with the AWS CLI: set up (bucket, data, role, image), train on
# (spot) instances, follow a job, deploy its model to an endpoint, invoke it, stop, clean up.
# See docs/DEPLOYMENT.md. Needs the AWS CLI (v2 recommended, v1 works), jq, and for `train` the cifar100
# binary (its `sagemaker hyperparameters` and `sagemaker metric-definitions` commands).
set -euo pipefail

PROG=deploy.sh
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$SCRIPT_DIR")

# ---- settings: environment first, options override -------------------------------------------------------
AWS_BIN=${AWS_CLI:-aws}
REGION=${AWS_REGION:-${AWS_DEFAULT_REGION:-}}
PROFILE=""
DRY_RUN=0
YES=0
BUCKET=${CIFAR100_BUCKET:-}
PREFIX=${CIFAR100_PREFIX:-cifar100}
ROLE_NAME=${CIFAR100_ROLE_NAME:-cifar100-sagemaker}
ROLE_ARN=${CIFAR100_ROLE_ARN:-}
IMAGE=${CIFAR100_IMAGE:-}
REPO=${CIFAR100_ECR_REPO:-cifar100}
# The image tag in ECR; empty: by instance kind, cpu (docker/Dockerfile) or cuda (docker/Dockerfile.cuda).
IMAGE_TAG=${CIFAR100_IMAGE_TAG:-}
LOCAL_IMAGE=${CIFAR100_LOCAL_IMAGE:-}
ENGINE=${ENGINE:-}
ARCHIVE=${CIFAR100_ARCHIVE:-$ROOT/../shared/data/cifar-100-binary.tar.gz}
if [[ -n ${CIFAR100_BIN:-} ]]; then BIN=$CIFAR100_BIN
elif [[ -x $ROOT/build/cifar100 ]]; then BIN=$ROOT/build/cifar100
else BIN=cifar100; fi
CONFIG=${CIFAR100_CONFIG:-quick-cpu}
TRAIN_INSTANCE=${CIFAR100_INSTANCE_TYPE:-ml.c5.2xlarge}
ENDPOINT_INSTANCE=${CIFAR100_ENDPOINT_INSTANCE_TYPE:-ml.c5.xlarge}
ENDPOINT_NAME=${CIFAR100_ENDPOINT:-cifar100}
MAX_RUNTIME=${CIFAR100_MAX_RUNTIME:-86400}
MAX_WAIT=${CIFAR100_MAX_WAIT:-}
VOLUME_GB=${CIFAR100_VOLUME_GB:-30}
INSTANCE_COUNT=${CIFAR100_INSTANCE_COUNT:-1}
POLL=${CIFAR100_POLL_SECONDS:-30}
TEST_IMAGE=${CIFAR100_TEST_IMAGE:-}
# ASSUMPTION, not a quoted price: managed spot training is billed at the spot price, which AWS advertises
# as "up to 90%" below on-demand and which moves with demand. 0.70 (spot = 30% of on-demand) is a typical
# figure used for the estimate only; override with CIFAR100_SPOT_DISCOUNT.
SPOT_DISCOUNT=${CIFAR100_SPOT_DISCOUNT:-0.70}
LOG_GROUP=/aws/sagemaker/TrainingJobs
PLACEHOLDER_ACCOUNT=123456789012

# Instances of the SageMaker module this project replaces. Price: on-demand USD per hour for SageMaker
# training in us-east-1 (N. Virginia), taken from https://aws.amazon.com/sagemaker/pricing/ and rounded;
# APPROXIMATE (prices change and differ by region; endpoints are billed at the similar real-time
# inference rates). Columns: type, kind, vCPUs, GPUs, memory GiB, USD/hour, the GPU's CUDA compute
# capability (its generation: 7.0 Volta, 7.5 Turing, 8.0/8.6 Ampere, 8.9 Ada, 9.0 Hopper).
INSTANCE_TABLE="\
ml.p3.2xlarge   gpu  8   1xV100-16GB   61   3.825   7.0
ml.p3.8xlarge   gpu  32  4xV100-16GB   244  14.688  7.0
ml.g4dn.xlarge  gpu  4   1xT4-16GB     16   0.736   7.5
ml.g5.xlarge    gpu  4   1xA10G-24GB   16   1.408   8.6
ml.g6.xlarge    gpu  4   1xL4-24GB     16   1.006   8.9
ml.p4d.24xlarge gpu  96  8xA100-40GB   1152 37.688  8.0
ml.p5.48xlarge  gpu  192 8xH100-80GB   2048 113.068 9.0
ml.c5.xlarge    cpu  4   -             8    0.204   -
ml.c5.2xlarge   cpu  8   -             16   0.408   -
ml.c5.4xlarge   cpu  16  -             32   0.816   -
ml.c5.9xlarge   cpu  36  -             72   1.836   -"
# The oldest GPU generation the CUDA image runs: its LibTorch (PyPI torch 2.15.0, CUDA 13.2) carries kernels
# for compute capability 7.5, 8.0, 8.6, 9.0, 10.0 and 12.0 (8.9 runs 8.6's); CUDA 13 builds nothing for Volta.
CUDA_MIN_CAPABILITY=7.5

# ---- messages and usage -------------------------------------------------------------------------------------
say() { printf '%s\n' "$*"; }
note() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { note "$*"; exit 1; }

usage() {
  cat <<EOF
Usage: $PROG [GLOBAL OPTIONS] COMMAND [OPTIONS] [ARGS]

cifar100 on Amazon SageMaker with the AWS CLI (see docs/DEPLOYMENT.md).

Commands:
  setup                 check tools, credentials and region; create the bucket, upload the data, create
                        the execution role and push the image to ECR (all idempotent)
  train                 start a training job (managed spot by default) after a cost estimate
  follow JOB            follow a job: status, transitions, metrics and log lines, until it ends
  deploy JOB            create the model, endpoint config and endpoint from a job; test it once
  invoke ENDPOINT IMAGE...  classify PNG/JPEG files with an endpoint (top 5)
  stop JOB              stop a training job (it checkpoints and exits)
  cleanup               delete the endpoint, its config and model; then the bucket (asks first)
  COMMAND --help        the options of one command

Global options (anywhere on the line):
  --region REGION       AWS region (default \$AWS_REGION, \$AWS_DEFAULT_REGION, then the CLI's config)
  --profile NAME        AWS CLI profile (default: the CLI's usual choice, \$AWS_PROFILE)
  --dry-run             print every AWS request (command line, JSON bodies) instead of sending it
  -y, --yes             do not ask for confirmation
  -h, --help            this help

Environment (options override):
  CIFAR100_BUCKET       S3 bucket; must contain "sagemaker" (default sagemaker-cifar100-ACCOUNT-REGION)
  CIFAR100_PREFIX       key prefix in the bucket (default cifar100)
  CIFAR100_ARCHIVE      local cifar-100-binary.tar.gz (default ../shared/data/ beside the repository)
  CIFAR100_ROLE_NAME    execution role name (default cifar100-sagemaker); CIFAR100_ROLE_ARN: use this ARN
  CIFAR100_IMAGE        training/serving image URI (default ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO:TAG)
  CIFAR100_ECR_REPO, CIFAR100_IMAGE_TAG, CIFAR100_LOCAL_IMAGE   ECR repository (cifar100), tag (default cpu
                        for CPU instances, cuda for GPU ones) and the local image pushed by setup
                        (default cifar100:TAG); ENGINE=docker|podman
  CIFAR100_BIN          the cifar100 binary (default build/cifar100, else cifar100 on PATH)
  CIFAR100_CONFIG       preset or YAML file for train (default quick-cpu)
  CIFAR100_INSTANCE_TYPE, CIFAR100_ENDPOINT_INSTANCE_TYPE   defaults ml.c5.2xlarge and ml.c5.xlarge
  CIFAR100_ENDPOINT     endpoint name (default cifar100)
  CIFAR100_MAX_RUNTIME, CIFAR100_MAX_WAIT   seconds (default 86400, and 2 x runtime for spot)
  CIFAR100_VOLUME_GB    training volume (default 30)
  CIFAR100_INSTANCE_COUNT   training instances (default 1; more: one data-parallel job over all)
  CIFAR100_POLL_SECONDS polling interval of follow and deploy (default 30)
  CIFAR100_TEST_IMAGE   PNG/JPEG that deploy sends to the new endpoint
  CIFAR100_SPOT_DISCOUNT  ASSUMED spot discount for the estimate (default 0.70)
  AWS_CLI               the aws command (default aws)
  AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL   honoured by this script for every CLI version (passed as
                        --endpoint-url): S3, SAGEMAKER, SAGEMAKER_RUNTIME, IAM, STS, ECR, CLOUDWATCH_LOGS

Exit status: 0 success, 1 failure (an AWS error is printed with its operation and message), 2 usage error.
EOF
}

help_setup() {
  cat <<EOF
Usage: $PROG setup [OPTIONS]

Checks aws, jq, the cifar100 binary and docker/podman; the credentials (sts get-caller-identity) and the
region. Creates the bucket if missing (its name must contain "sagemaker"), uploads the archive to
s3://BUCKET/PREFIX/data/cifar-100-binary.tar.gz unless an object of the same size is there, creates or
reuses the execution role (trust: sagemaker.amazonaws.com; inline policy: this bucket prefix, ECR pull,
CloudWatch Logs and metrics), creates the ECR repository and pushes the local image.

Options:
  --bucket NAME         S3 bucket (\$CIFAR100_BUCKET; default sagemaker-cifar100-ACCOUNT-REGION)
  --prefix PREFIX       key prefix (\$CIFAR100_PREFIX, default cifar100)
  --archive FILE        local cifar-100-binary.tar.gz (\$CIFAR100_ARCHIVE)
  --role-name NAME      execution role (\$CIFAR100_ROLE_NAME, default cifar100-sagemaker)
  --repo NAME           ECR repository (\$CIFAR100_ECR_REPO, default cifar100)
  --image-tag TAG       tag in ECR (\$CIFAR100_IMAGE_TAG; default the local image's tag, else cpu)
  --local-image NAME    local image to push (\$CIFAR100_LOCAL_IMAGE, default cifar100:TAG; scripts/image.sh
                        builds cifar100:cpu, and with --cuda cifar100:cuda, which GPU instances use)
  --no-push             do not log in to ECR, tag or push (the repository is still created)
EOF
}

help_train() {
  cat <<EOF
Usage: $PROG train [OPTIONS]

Sends CreateTrainingJob (--cli-input-json): string hyperparameters from
\`cifar100 sagemaker hyperparameters --config CONFIG --set ...\`, MetricDefinitions from
\`cifar100 sagemaker metric-definitions\`, the channel "training" = the uploaded archive, checkpoints synced
to S3, the model to s3://BUCKET/PREFIX/output/JOB/output/model.tar.gz. Prints a cost estimate and asks first.

Options:
  --config PRESET|FILE  preset or YAML file (\$CIFAR100_CONFIG, default quick-cpu)
  --set KEY=VALUE       override a config key (repeatable)
  --job-name NAME       1-63 characters [a-zA-Z0-9-], starting and ending alphanumeric
                        (default cifar100-PRESET-YYYYmmdd-HHMMSS, UTC)
  --instance-type TYPE  one of the table below (\$CIFAR100_INSTANCE_TYPE, default ml.c5.2xlarge)
  --no-spot             on-demand instead of managed spot training
  --max-runtime S       StoppingCondition.MaxRuntimeInSeconds (\$CIFAR100_MAX_RUNTIME, default 86400)
  --max-wait S          MaxWaitTimeInSeconds for spot, >= max runtime (\$CIFAR100_MAX_WAIT, default 2 x runtime)
  --hours H             expected hours for the cost estimate (default: the max runtime)
  --instance-count N    instances (hosts) for data-parallel training (\$CIFAR100_INSTANCE_COUNT, default 1);
                        each host starts one process per GPU and they form one group (batch_size is global)
  --volume-gb N         training volume size (\$CIFAR100_VOLUME_GB, default 30)
  --bucket, --prefix, --role-name   as for setup; --role-arn ARN (\$CIFAR100_ROLE_ARN) skips the lookup
  --image URI           training image (\$CIFAR100_IMAGE; default the ECR image of setup)
  --repo, --image-tag   as for setup
  --data-s3 URI         training channel (default s3://BUCKET/PREFIX/data/cifar-100-binary.tar.gz)
  --checkpoint-s3 URI   CheckpointConfig.S3Uri (default s3://BUCKET/PREFIX/checkpoints/JOB; reuse one to
                        resume from another job's checkpoints)
  --output-s3 URI       OutputDataConfig.S3OutputPath (default s3://BUCKET/PREFIX/output)

$(instance_table)
EOF
}

help_follow() {
  cat <<EOF
Usage: $PROG follow JOB [OPTIONS]

Polls DescribeTrainingJob (its own loop, no CLI waiter and no 6-hour limit) and prints the status, each
secondary-status transition (Starting, Downloading, Training, Interrupted for spot, Uploading, ...), the
latest metric values, and new log lines of /aws/sagemaker/TrainingJobs streams JOB/*. Ctrl-C stops the
following, not the job. Exit status: 0 Completed, 1 Failed (FailureReason printed) or Stopped.

Options:
  --poll SECONDS        interval between polls (\$CIFAR100_POLL_SECONDS, default 30)
  --no-logs             do not read CloudWatch Logs
EOF
}

help_deploy() {
  cat <<EOF
Usage: $PROG deploy JOB [OPTIONS]

Takes the job's model.tar.gz (ModelArtifacts.S3ModelArtifacts), image and role; creates the model (the
image runs as \`serve\`), the endpoint config and the endpoint; waits for InService; invokes it once with a
test image and prints the top 5.

Options:
  --endpoint-name NAME  endpoint (\$CIFAR100_ENDPOINT, default cifar100)
  --model-name NAME     model and endpoint config name (default JOB)
  --instance-type TYPE  one of the table (\$CIFAR100_ENDPOINT_INSTANCE_TYPE, default ml.c5.xlarge)
  --image URI           serving image (default the job's training image)
  --role-arn ARN        the model's execution role (default the job's role)
  --bucket, --prefix    only for --dry-run: where the job's model.tar.gz is assumed to be
  --test-image FILE     PNG/JPEG for the check (\$CIFAR100_TEST_IMAGE; default a training image made with
                        \`cifar100 data preview\` from the archive; skipped when neither is there)
  --poll SECONDS        interval between DescribeEndpoint calls (default \$CIFAR100_POLL_SECONDS or 30)
  --timeout SECONDS     give up waiting for InService after this (default 1800)

$(instance_table)
EOF
}

help_invoke() {
  cat <<EOF
Usage: $PROG invoke ENDPOINT IMAGE... [OPTIONS]

Sends each PNG or JPEG (recognised by its bytes) to the endpoint with sagemaker-runtime invoke-endpoint
(Content-Type image/png or image/jpeg) and prints the top 5: rank, class, name, probability.
EOF
}

help_stop() {
  cat <<EOF
Usage: $PROG stop JOB [OPTIONS]

Stops a training job (asks first unless --yes). The container gets SIGTERM, writes a checkpoint and exits;
SageMaker uploads what it wrote. \`$PROG follow JOB\` shows the end (Stopped).
EOF
}

help_cleanup() {
  cat <<EOF
Usage: $PROG cleanup [OPTIONS]

Deletes the endpoint, its endpoint config and its model(s); then, after asking (unless --yes), the bucket
and every object in it (data, checkpoints, models). The role and the ECR repository are kept (the
commands to delete them are printed).

Options:
  --endpoint-name NAME  endpoint (\$CIFAR100_ENDPOINT, default cifar100)
  --model-name NAME     also delete the endpoint config and model of this name (left by a failed deploy)
  --bucket NAME         bucket (\$CIFAR100_BUCKET; default sagemaker-cifar100-ACCOUNT-REGION)
  --keep-bucket         do not delete the bucket
EOF
}

instance_table() {
  printf 'Instance types (on-demand USD/hour, SageMaker training, us-east-1, approximate; spot estimated at\n'
  printf '%s%% off, an ASSUMPTION):\n' "$(awk -v d="$SPOT_DISCOUNT" 'BEGIN{printf "%g", d*100}')"
  printf '  %-16s %-4s %5s %-12s %7s %9s %9s  %s\n' type kind vCPUs GPUs mem-GiB on-demand spot~ "CUDA image"
  while read -r t k c g m p cc; do
    printf '  %-16s %-4s %5s %-12s %7s %9s %9s  %s\n' "$t" "$k" "$c" "$g" "$m" "\$$p" \
      "\$$(awk -v p="$p" -v d="$SPOT_DISCOUNT" 'BEGIN{printf "%.3f", p*(1-d)}')" \
      "$(cuda_image_column "$k" "$cc")"
  done <<<"$INSTANCE_TABLE"
}

CURRENT_CMD=""
bad_usage() {
  note "$1"
  case "$CURRENT_CMD" in
    "") usage ;;
    *) "help_$CURRENT_CMD" ;;
  esac >&2
  exit 2
}

# instance_field TYPE COLUMN (2 kind .. 6 price, 7 compute capability); fails for a type not in the table
instance_field() { awk -v t="$1" -v c="$2" '$1 == t { print $c; found = 1 } END { exit !found }' <<<"$INSTANCE_TABLE"; }

# gpu_supported CAPABILITY: whether the CUDA image runs a GPU of that compute capability
gpu_supported() { awk -v c="$1" -v m="$CUDA_MIN_CAPABILITY" 'BEGIN { exit !(c + 0 >= m + 0) }'; }

cuda_image_column() { # kind capability
  if [[ $1 == cpu ]]; then echo -
  elif gpu_supported "$2"; then echo "yes ($2)"
  else echo "no ($2)"; fi
}

# The known types, and for GPU instances only those whose GPU the CUDA image runs (a V100 it cannot).
check_instance_type() {
  if ! instance_field "$1" 6 >/dev/null; then
    note "unknown instance type '$1'; known types:"
    instance_table >&2
    exit 2
  fi
  local cc
  cc=$(instance_field "$1" 7)
  if [[ $(instance_field "$1" 2) == gpu ]] && ! gpu_supported "$cc"; then
    note "the GPUs of $1 ($(instance_field "$1" 4), compute capability $cc) cannot run the cifar100 CUDA image:"
    note "CUDA 13, which it is built with, supports compute capability $CUDA_MIN_CAPABILITY (Turing) and newer."
    note "Use ml.g4dn.xlarge (1x T4, the cheapest), ml.g5.xlarge (1x A10G) or, for several GPUs, ml.p4d.24xlarge."
    exit 2
  fi
}

# The ECR tag for an instance type: as given, else cuda for GPU instances and cpu for CPU ones.
image_tag_for() {
  if [[ -n $IMAGE_TAG ]]; then echo "$IMAGE_TAG"
  elif [[ $(instance_field "$1" 2) == gpu ]]; then echo cuda
  else echo cpu; fi
}

valid_name() { [[ ${#1} -ge 1 && ${#1} -le 63 && $1 =~ ^[a-zA-Z0-9](-*[a-zA-Z0-9])*$ ]]; }

check_bucket_name() {
  local b=$1
  if ! [[ $b =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || [[ $b == *..* ]]; then
    note "invalid bucket name '$b': 3-63 characters, lowercase letters, digits, '.' and '-'"
    exit 2
  fi
  if [[ $b != *sagemaker* ]]; then
    note "bucket name '$b' must contain \"sagemaker\": the AmazonSageMakerFullAccess policy (and the usual"
    note "SageMaker setups) grant S3 access only to buckets whose name contains it; choose e.g. sagemaker-$b"
    exit 2
  fi
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# ---- running the AWS CLI ------------------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/cifar100-deploy.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
export AWS_PAGER=""

# The AWS CLI 2.9 ignores AWS_ENDPOINT_URL_<SERVICE>/AWS_ENDPOINT_URL (newer versions honour them), so they
# are passed as --endpoint-url to every call, for any CLI version.
endpoint_for() {
  local var
  case "$1" in
    s3 | s3api) var=AWS_ENDPOINT_URL_S3 ;;
    sagemaker) var=AWS_ENDPOINT_URL_SAGEMAKER ;;
    sagemaker-runtime) var=AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME ;;
    iam) var=AWS_ENDPOINT_URL_IAM ;;
    sts) var=AWS_ENDPOINT_URL_STS ;;
    ecr) var=AWS_ENDPOINT_URL_ECR ;;
    logs) var=AWS_ENDPOINT_URL_CLOUDWATCH_LOGS ;;
    *) var=AWS_ENDPOINT_URL_$(tr 'a-z-' 'A-Z_' <<<"$1") ;;
  esac
  printf '%s' "${!var:-${AWS_ENDPOINT_URL:-}}"
}

# Builds the full command line of one request in CMD.
build_cmd() {
  local svc=$1 op=$2 url
  shift 2
  CMD=("$AWS_BIN" "$svc" "$op" "$@")
  url=$(endpoint_for "$svc")
  [[ -z $url ]] || CMD+=(--endpoint-url "$url")
  [[ -z $REGION ]] || CMD+=(--region "$REGION")
  [[ -z $PROFILE ]] || CMD+=(--profile "$PROFILE")
  case "$svc" in s3) ;; *) CMD+=(--output json) ;; esac
}

# Prints a request of a dry run: the command line, then the JSON of every file:// argument.
show_request() {
  local a shown=()
  for a in "$@"; do shown+=("$(printf '%q' "$a")"); done
  printf '+ %s\n' "${shown[*]}"
  for a in "$@"; do
    if [[ $a == file://* && -f ${a#file://} ]]; then jq . "${a#file://}" 2>/dev/null || cat "${a#file://}"; fi
  done
}

# aws_try SERVICE OPERATION ARGS...: one request; its output (JSON) in AWS_OUT. On failure returns the CLI's
# status with AWS_ERROR (the service's message) and AWS_ERROR_CODE (e.g. NoSuchEntity, 404) set. In a dry
# run prints the request and fails with AWS_ERROR_CODE=DryRun (callers then show what they would create).
AWS_OUT=""
AWS_ERROR=""
AWS_ERROR_CODE=""
aws_try() {
  local svc=$1 op=$2 rc=0 err
  build_cmd "$@"
  AWS_OUT=""
  AWS_ERROR=""
  AWS_ERROR_CODE=""
  if ((DRY_RUN)); then
    show_request "${CMD[@]}"
    AWS_ERROR_CODE=DryRun
    return 1
  fi
  command -v "$AWS_BIN" >/dev/null ||
    die "the AWS CLI ('$AWS_BIN') is not installed (https://aws.amazon.com/cli/; Debian: apt-get install awscli)"
  "${CMD[@]}" >"$TMP/aws.out" 2>"$TMP/aws.err" </dev/null || rc=$?
  AWS_OUT=$(cat "$TMP/aws.out")
  rm -f "$TMP/aws.out"
  ((rc != 0)) || return 0
  # "An error occurred (CODE) when calling the OPERATION operation[ (reached max retries: N)]: MESSAGE"
  err=$(tr '\n' ' ' <"$TMP/aws.err" | sed -e 's/[[:space:]]\{1,\}/ /g' -e 's/^ //' -e 's/ $//')
  if [[ $err =~ An\ error\ occurred\ \(([^\)]*)\)\ when\ calling\ the\ [A-Za-z0-9]+\ operation(\ \(reached\ max\ retries:\ [0-9]+\))?:\ ?(.*)$ ]]; then
    AWS_ERROR_CODE=${BASH_REMATCH[1]}
    AWS_ERROR="${BASH_REMATCH[1]}: ${BASH_REMATCH[3]}"
  else
    AWS_ERROR=${err:-"exit status $rc, no message"}
  fi
  [[ -n $AWS_ERROR ]] || AWS_ERROR="exit status $rc"
  [[ $svc != s3 ]] || [[ -n $AWS_ERROR_CODE ]] || AWS_ERROR_CODE=$rc
  return "$rc"
}

aws_report() { note "$1 $2 failed: $AWS_ERROR"; }

# aws_run SERVICE OPERATION ARGS...: like aws_try, but a failure is reported and returns 1. In a dry run
# the request is printed and it succeeds with no output.
aws_run() {
  if aws_try "$@"; then return 0; fi
  [[ $AWS_ERROR_CODE == DryRun ]] && return 0
  aws_report "$1" "$2"
  return 1
}

# run_local CMD...: a local command that changes something (docker push, ...); printed in a dry run.
run_local() {
  if ((DRY_RUN)); then show_request "$@"; return 0; fi
  "$@"
}

confirm() {
  ((YES || DRY_RUN)) && return 0
  local answer=""
  printf '%s [y/N] ' "$1" >&2
  read -r answer || true
  [[ $answer == [yY] || $answer == [yY][eE][sS] ]]
}

# ---- shared lookups ------------------------------------------------------------------------------------------
need_region() {
  if [[ -z $REGION ]]; then
    REGION=$("$AWS_BIN" configure get region ${PROFILE:+--profile "$PROFILE"} 2>/dev/null || true)
  fi
  [[ -n $REGION ]] || die "no region: pass --region REGION or set AWS_REGION (or run 'aws configure')"
  [[ $REGION =~ ^[a-z]{2}(-[a-z]+)+-[0-9]+$ ]] || die "'$REGION' does not look like an AWS region (e.g. us-east-1)"
}

ACCOUNT=""
CALLER_ARN=""
need_account() {
  [[ -z $ACCOUNT ]] || return 0
  if aws_try sts get-caller-identity; then
    ACCOUNT=$(jq -r .Account <<<"$AWS_OUT")
    CALLER_ARN=$(jq -r .Arn <<<"$AWS_OUT")
  elif [[ $AWS_ERROR_CODE == DryRun ]]; then
    ACCOUNT=$PLACEHOLDER_ACCOUNT
    say "# dry run: account id unknown, shown as $ACCOUNT"
  else
    aws_report sts get-caller-identity
    die "no usable AWS credentials (aws configure, AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
  fi
}

need_bucket() {
  if [[ -z $BUCKET ]]; then
    need_region
    need_account
    BUCKET="sagemaker-cifar100-$ACCOUNT-$REGION"
  fi
  check_bucket_name "$BUCKET"
  PREFIX=${PREFIX#/}
  PREFIX=${PREFIX%/}
  [[ -n $PREFIX ]] || bad_usage "--prefix must not be empty"
}

data_key() { printf '%s/data/cifar-100-binary.tar.gz' "$PREFIX"; }

need_image() { # [INSTANCE_TYPE]: the image for that instance (by default its kind's tag)
  [[ -z $IMAGE ]] || return 0
  need_region
  need_account
  IMAGE="$ACCOUNT.dkr.ecr.$REGION.amazonaws.com/$REPO:$(image_tag_for "${1:-$TRAIN_INSTANCE}")"
}

need_role_arn() {
  [[ -z $ROLE_ARN ]] || return 0
  if aws_try iam get-role --role-name "$ROLE_NAME"; then
    ROLE_ARN=$(jq -r .Role.Arn <<<"$AWS_OUT")
  elif [[ $AWS_ERROR_CODE == DryRun ]]; then
    need_account
    ROLE_ARN="arn:aws:iam::$ACCOUNT:role/$ROLE_NAME"
  elif [[ $AWS_ERROR_CODE == NoSuchEntity ]]; then
    die "execution role '$ROLE_NAME' not found: run '$PROG setup' or pass --role-arn"
  else
    aws_report iam get-role
    exit 1
  fi
}

warn_gpu_image() { # instance image
  if [[ $(instance_field "$1" 2) == gpu && $2 == *:cpu ]]; then
    note "warning: $1 has a GPU but the image $2 is the CPU build and will not use it; build and push"
    note "docker/Dockerfile.cuda (scripts/image.sh --cuda; setup --image-tag cuda --local-image cifar100:cuda)"
  fi
}

# ---- setup ----------------------------------------------------------------------------------------------------
cmd_setup() {
  local no_push=0
  while (($#)); do
    split_opt "$@" && set -- "${SPLIT[@]}"
    case "$1" in
      --bucket) need_value "$@"; BUCKET=$2; shift 2 ;;
      --prefix) need_value "$@"; PREFIX=$2; shift 2 ;;
      --archive) need_value "$@"; ARCHIVE=$2; shift 2 ;;
      --role-name) need_value "$@"; ROLE_NAME=$2; shift 2 ;;
      --repo) need_value "$@"; REPO=$2; shift 2 ;;
      --image-tag) need_value "$@"; IMAGE_TAG=$2; shift 2 ;;
      --local-image) need_value "$@"; LOCAL_IMAGE=$2; shift 2 ;;
      --no-push) no_push=1; shift ;;
      -h | --help) help_setup; exit 0 ;;
      *) global_or_bad "$@"; shift "$NSHIFT" ;;
    esac
  done
  [[ -z $BUCKET ]] || check_bucket_name "$BUCKET"

  say "== tools"
  command -v "$AWS_BIN" >/dev/null || die "the AWS CLI ('$AWS_BIN') is not installed (https://aws.amazon.com/cli/; Debian: apt-get install awscli)"
  local v
  v=$("$AWS_BIN" --version 2>&1 | head -n1)
  say "aws: $v"
  [[ $v != aws-cli/1.* ]] || note "warning: AWS CLI v1 works, but v2 is recommended"
  command -v jq >/dev/null || die "jq is not installed (Debian: apt-get install jq)"
  if command -v "$BIN" >/dev/null 2>&1; then say "cifar100: $BIN"
  else note "warning: the cifar100 binary ('$BIN') is missing: train needs it (scripts/build.sh, or CIFAR100_BIN)"; fi
  if ((!no_push)); then
    if [[ -z $ENGINE ]]; then
      if command -v docker >/dev/null; then ENGINE=docker
      elif command -v podman >/dev/null; then ENGINE=podman
      else die "neither docker nor podman is installed: needed to push the image (or use --no-push)"; fi
    fi
    say "image tool: $ENGINE"
  fi

  say "== account and region"
  need_region
  need_account
  say "region: $REGION"
  say "account: $ACCOUNT${CALLER_ARN:+ (caller $CALLER_ARN)}"
  need_bucket

  say "== bucket s3://$BUCKET"
  if aws_try s3api head-bucket --bucket "$BUCKET"; then
    say "bucket exists"
  elif [[ $AWS_ERROR_CODE == 403 || $AWS_ERROR_CODE == Forbidden || $AWS_ERROR_CODE == AccessDenied ]]; then
    die "bucket '$BUCKET' exists but this account cannot use it (another owner, or no s3 permission): choose another --bucket"
  elif [[ $AWS_ERROR_CODE == 404 || $AWS_ERROR_CODE == NotFound || $AWS_ERROR_CODE == NoSuchBucket || $AWS_ERROR_CODE == DryRun ]]; then
    if [[ $REGION == us-east-1 ]]; then
      aws_run s3api create-bucket --bucket "$BUCKET"
    else
      aws_run s3api create-bucket --bucket "$BUCKET" --create-bucket-configuration "LocationConstraint=$REGION"
    fi
    say "bucket created"
  else
    aws_report s3api head-bucket
    exit 1
  fi

  say "== data"
  [[ -f $ARCHIVE ]] || die "archive '$ARCHIVE' not found: pass --archive or set CIFAR100_ARCHIVE (the official cifar-100-binary.tar.gz, https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz)"
  local size remote key
  size=$(wc -c <"$ARCHIVE" | tr -d ' ')
  key=$(data_key)
  remote=""
  if aws_try s3api head-object --bucket "$BUCKET" --key "$key"; then
    remote=$(jq -r .ContentLength <<<"$AWS_OUT")
  elif [[ $AWS_ERROR_CODE != 404 && $AWS_ERROR_CODE != NotFound && $AWS_ERROR_CODE != NoSuchKey && $AWS_ERROR_CODE != DryRun ]]; then
    aws_report s3api head-object
    exit 1
  fi
  if [[ $remote == "$size" ]]; then
    say "s3://$BUCKET/$key is there ($size bytes, same size): not uploaded again"
  else
    say "uploading $ARCHIVE ($size bytes) to s3://$BUCKET/$key"
    aws_run s3 cp "$ARCHIVE" "s3://$BUCKET/$key" --no-progress
    [[ -z $AWS_OUT ]] || say "$AWS_OUT"
  fi

  say "== execution role $ROLE_NAME"
  setup_role

  say "== image"
  setup_image "$no_push"

  say "== done"
  say "bucket: s3://$BUCKET/$PREFIX/"
  say "role:   $ROLE_ARN"
  say "image:  $IMAGE"
  say "next:   $PROG train --bucket $BUCKET --config quick-cpu"
}

trust_policy() {
  jq -n '{Version: "2012-10-17", Statement: [{Effect: "Allow", Principal: {Service: "sagemaker.amazonaws.com"},
          Action: "sts:AssumeRole"}]}'
}

# The narrowest permissions a training job and an endpoint of this project need (docs/DEPLOYMENT.md):
# objects under this bucket's prefix, listing the bucket, pulling from this ECR repository, writing its
# CloudWatch logs and the SageMaker metrics.
access_policy() {
  jq -n --arg b "$BUCKET" --arg p "$PREFIX" --arg repo "arn:aws:ecr:$REGION:$ACCOUNT:repository/$REPO" \
    --arg logs "arn:aws:logs:$REGION:$ACCOUNT:log-group:/aws/sagemaker/*" '
  {Version: "2012-10-17", Statement: [
    {Sid: "ListBucket", Effect: "Allow", Action: ["s3:ListBucket", "s3:GetBucketLocation"],
     Resource: "arn:aws:s3:::\($b)"},
    {Sid: "ObjectsUnderPrefix", Effect: "Allow",
     Action: ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
     Resource: "arn:aws:s3:::\($b)/\($p)/*"},
    {Sid: "EcrAuth", Effect: "Allow", Action: "ecr:GetAuthorizationToken", Resource: "*"},
    {Sid: "EcrPull", Effect: "Allow",
     Action: ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
     Resource: $repo},
    {Sid: "Logs", Effect: "Allow",
     Action: ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
     Resource: [$logs, "\($logs):log-stream:*"]},
    {Sid: "Metrics", Effect: "Allow", Action: "cloudwatch:PutMetricData", Resource: "*",
     Condition: {StringLike: {"cloudwatch:namespace": "/aws/sagemaker/*"}}}
  ]}'
}

setup_role() {
  trust_policy >"$TMP/trust-policy.json"
  access_policy >"$TMP/access-policy.json"
  if aws_try iam get-role --role-name "$ROLE_NAME"; then
    ROLE_ARN=$(jq -r .Role.Arn <<<"$AWS_OUT")
    say "role exists: $ROLE_ARN"
    # The CLI gives the trust policy as JSON (IAM sends it URL-encoded; v1 may leave it so).
    if ! grep -q 'sagemaker.amazonaws.com' <<<"$(jq -r '.Role.AssumeRolePolicyDocument | if type == "string" then . else tojson end' <<<"$AWS_OUT")"; then
      note "warning: role $ROLE_NAME does not trust sagemaker.amazonaws.com; SageMaker cannot assume it"
      note "(aws iam update-assume-role-policy --role-name $ROLE_NAME --policy-document file://trust.json, see docs/DEPLOYMENT.md)"
    fi
  elif [[ $AWS_ERROR_CODE == NoSuchEntity || $AWS_ERROR_CODE == DryRun ]]; then
    aws_run iam create-role --role-name "$ROLE_NAME" \
      --assume-role-policy-document "file://$TMP/trust-policy.json" \
      --description "SageMaker execution role for cifar100 (scripts/deploy.sh)"
    if ((DRY_RUN)); then ROLE_ARN="arn:aws:iam::$ACCOUNT:role/$ROLE_NAME"
    else ROLE_ARN=$(jq -r .Role.Arn <<<"$AWS_OUT"); fi
    say "role created: $ROLE_ARN (IAM takes a few seconds to make a new role usable)"
  else
    aws_report iam get-role
    exit 1
  fi
  aws_run iam put-role-policy --role-name "$ROLE_NAME" --policy-name "cifar100-access-$BUCKET" \
    --policy-document "file://$TMP/access-policy.json"
  say "inline policy cifar100-access-$BUCKET: s3://$BUCKET/$PREFIX/*, ECR pull of $REPO, logs and metrics"
}

setup_image() {
  local no_push=$1 registry
  registry="$ACCOUNT.dkr.ecr.$REGION.amazonaws.com"
  if aws_try ecr describe-repositories --repository-names "$REPO"; then
    say "ECR repository $REPO exists"
  elif [[ $AWS_ERROR_CODE == RepositoryNotFoundException || $AWS_ERROR_CODE == DryRun ]]; then
    aws_run ecr create-repository --repository-name "$REPO" --image-scanning-configuration scanOnPush=true
    say "ECR repository $REPO created"
  else
    aws_report ecr describe-repositories
    exit 1
  fi
  # The tag follows the local image's (cifar100:cuda -> cuda), cpu by default; the local image follows the tag.
  [[ -n $IMAGE_TAG ]] || { [[ $LOCAL_IMAGE == *:* && ${LOCAL_IMAGE##*:} != */* ]] && IMAGE_TAG=${LOCAL_IMAGE##*:}; } ||
    IMAGE_TAG=cpu
  [[ -n $LOCAL_IMAGE ]] || LOCAL_IMAGE="cifar100:$IMAGE_TAG"
  [[ -n $IMAGE ]] || IMAGE="$registry/$REPO:$IMAGE_TAG"
  if ((no_push)); then
    say "not pushing (--no-push): $IMAGE must exist for train and deploy"
    return 0
  fi
  if ((!DRY_RUN)) && ! "$ENGINE" image inspect "$LOCAL_IMAGE" >/dev/null 2>&1; then
    die "local image $LOCAL_IMAGE not found: build it with scripts/image.sh (or pass --local-image, or --no-push)"
  fi
  build_cmd ecr get-login-password
  if ((DRY_RUN)); then
    show_request "${CMD[@]}"
    say "  | $ENGINE login --username AWS --password-stdin $registry"
  elif ! "${CMD[@]}" 2>"$TMP/aws.err" | "$ENGINE" login --username AWS --password-stdin "$registry" >/dev/null; then
    # The password goes through the pipe only, never to a file.
    die "ecr get-login-password | $ENGINE login $registry failed: $(tr '\n' ' ' <"$TMP/aws.err")"
  fi
  run_local "$ENGINE" tag "$LOCAL_IMAGE" "$IMAGE"
  run_local "$ENGINE" push "$IMAGE"
  say "pushed $IMAGE"
}

# ---- train ----------------------------------------------------------------------------------------------------
cmd_train() {
  local job="" spot=1 hours="" data_s3="" ckpt_s3="" out_s3="" sets=()
  while (($#)); do
    split_opt "$@" && set -- "${SPLIT[@]}"
    case "$1" in
      --config) need_value "$@"; CONFIG=$2; shift 2 ;;
      --set) need_value "$@"; [[ $2 == ?*=* ]] || bad_usage "--set needs KEY=VALUE, not '$2'"; sets+=(--set "$2"); shift 2 ;;
      --job-name) need_value "$@"; job=$2; shift 2 ;;
      --instance-type) need_value "$@"; TRAIN_INSTANCE=$2; shift 2 ;;
      --no-spot) spot=0; shift ;;
      --spot) spot=1; shift ;;
      --max-runtime) need_value "$@"; MAX_RUNTIME=$2; shift 2 ;;
      --max-wait) need_value "$@"; MAX_WAIT=$2; shift 2 ;;
      --hours) need_value "$@"; hours=$2; shift 2 ;;
      --volume-gb) need_value "$@"; VOLUME_GB=$2; shift 2 ;;
      --instance-count) need_value "$@"; INSTANCE_COUNT=$2; shift 2 ;;
      --bucket) need_value "$@"; BUCKET=$2; shift 2 ;;
      --prefix) need_value "$@"; PREFIX=$2; shift 2 ;;
      --role-name) need_value "$@"; ROLE_NAME=$2; shift 2 ;;
      --role-arn) need_value "$@"; ROLE_ARN=$2; shift 2 ;;
      --image) need_value "$@"; IMAGE=$2; shift 2 ;;
      --repo) need_value "$@"; REPO=$2; shift 2 ;;
      --image-tag) need_value "$@"; IMAGE_TAG=$2; shift 2 ;;
      --data-s3) need_value "$@"; data_s3=$2; shift 2 ;;
      --checkpoint-s3) need_value "$@"; ckpt_s3=$2; shift 2 ;;
      --output-s3) need_value "$@"; out_s3=$2; shift 2 ;;
      -h | --help) help_train; exit 0 ;;
      *) global_or_bad "$@"; shift "$NSHIFT" ;;
    esac
  done

  # Everything local is checked before any request.
  check_instance_type "$TRAIN_INSTANCE"
  if ! { is_uint "$MAX_RUNTIME" && ((MAX_RUNTIME >= 1 && MAX_RUNTIME <= 2419200)); }; then
    bad_usage "--max-runtime must be 1-2419200 seconds (28 days), not '$MAX_RUNTIME'"
  fi
  if ((spot)); then
    [[ -n $MAX_WAIT ]] || MAX_WAIT=$((2 * MAX_RUNTIME))
    if ! { is_uint "$MAX_WAIT" && ((MAX_WAIT >= MAX_RUNTIME)); }; then
      bad_usage "--max-wait ($MAX_WAIT) must be a number of seconds >= --max-runtime ($MAX_RUNTIME) for spot training"
    fi
  fi
  if ! { is_uint "$VOLUME_GB" && ((VOLUME_GB >= 1)); }; then
    bad_usage "--volume-gb must be a positive number, not '$VOLUME_GB'"
  fi
  if ! { is_uint "$INSTANCE_COUNT" && ((INSTANCE_COUNT >= 1 && INSTANCE_COUNT <= 100)); }; then
    bad_usage "--instance-count must be 1-100, not '$INSTANCE_COUNT'"
  fi
  [[ -z $hours || $hours =~ ^[0-9]+([.][0-9]+)?$ ]] || bad_usage "--hours must be a number, not '$hours'"
  if [[ -z $job ]]; then
    local base
    base=$(basename "$CONFIG")
    base=${base%.yaml}
    base=${base%.yml}
    base=$(tr -c 'a-zA-Z0-9\n' '-' <<<"$base" | tr -s '-' | sed 's/^-//; s/-$//')
    base=${base:0:34}
    base=${base%-}
    job="cifar100${base:+-$base}-$(date -u +%Y%m%d-%H%M%S)"
  fi
  valid_name "$job" || bad_usage "invalid job name '$job': SageMaker wants 1-63 characters, letters, digits and '-', starting and ending with a letter or digit (no '_' or '.')"
  command -v jq >/dev/null || die "jq is not installed (Debian: apt-get install jq)"
  command -v "$BIN" >/dev/null 2>&1 || die "the cifar100 binary ('$BIN') is missing: build it (scripts/build.sh) or set CIFAR100_BIN"

  local hp md
  if ! hp=$("$BIN" sagemaker hyperparameters --config "$CONFIG" "${sets[@]+"${sets[@]}"}" 2>"$TMP/hp.err"); then
    note "cifar100 sagemaker hyperparameters --config $CONFIG failed:"
    cat "$TMP/hp.err" >&2
    exit 1
  fi
  jq -e 'type == "object" and length <= 100 and all(.[]; type == "string")' <<<"$hp" >/dev/null 2>&1 ||
    die "cifar100 sagemaker hyperparameters did not print a JSON object of at most 100 string values: $hp"
  md=$("$BIN" sagemaker metric-definitions --compact) || die "cifar100 sagemaker metric-definitions failed"
  jq -e 'type == "array" and length <= 40' <<<"$md" >/dev/null || die "bad metric definitions: $md"

  need_region
  need_bucket
  need_image
  need_role_arn
  warn_gpu_image "$TRAIN_INSTANCE" "$IMAGE"
  [[ -n $data_s3 ]] || data_s3="s3://$BUCKET/$(data_key)"
  [[ -n $ckpt_s3 ]] || ckpt_s3="s3://$BUCKET/$PREFIX/checkpoints/$job"
  [[ -n $out_s3 ]] || out_s3="s3://$BUCKET/$PREFIX/output"

  # The data must be there (setup uploads it); a missing channel would only fail the job minutes later.
  if [[ $data_s3 == "s3://$BUCKET/$(data_key)" ]]; then
    if ! aws_try s3api head-object --bucket "$BUCKET" --key "$(data_key)"; then
      case "$AWS_ERROR_CODE" in
        DryRun) ;;
        404 | NotFound | NoSuchKey) die "no training data at $data_s3: run '$PROG setup' first" ;;
        *) aws_report s3api head-object; exit 1 ;;
      esac
    fi
  fi

  jq -n --arg name "$job" --arg image "$IMAGE" --arg role "$ROLE_ARN" --argjson hp "$hp" --argjson md "$md" \
    --arg data "$data_s3" --arg out "$out_s3" --arg ckpt "$ckpt_s3" --arg type "$TRAIN_INSTANCE" \
    --argjson volume "$VOLUME_GB" --argjson count "$INSTANCE_COUNT" --argjson runtime "$MAX_RUNTIME" --argjson spot "$( ((spot)) && echo true || echo false)" \
    --argjson wait "${MAX_WAIT:-0}" '
    {TrainingJobName: $name,
     AlgorithmSpecification: {TrainingImage: $image, TrainingInputMode: "File", MetricDefinitions: $md},
     RoleArn: $role,
     HyperParameters: $hp,
     InputDataConfig: [{ChannelName: "training", InputMode: "File",
       DataSource: {S3DataSource: {S3DataType: "S3Prefix", S3Uri: $data, S3DataDistributionType: "FullyReplicated"}}}],
     OutputDataConfig: {S3OutputPath: $out},
     ResourceConfig: {InstanceType: $type, InstanceCount: $count, VolumeSizeInGB: $volume},
     StoppingCondition: ({MaxRuntimeInSeconds: $runtime} + (if $spot then {MaxWaitTimeInSeconds: $wait} else {} end)),
     EnableManagedSpotTraining: $spot,
     CheckpointConfig: {S3Uri: $ckpt, LocalPath: "/opt/ml/checkpoints"},
     Tags: [{Key: "project", Value: "cifar100"}]}' >"$TMP/create-training-job.json"

  local price est_hours od sp
  price=$(instance_field "$TRAIN_INSTANCE" 6)
  est_hours=${hours:-$(awk -v s="$MAX_RUNTIME" 'BEGIN{printf "%.2f", s/3600}')}
  od=$(awk -v p="$price" -v h="$est_hours" -v n="$INSTANCE_COUNT" 'BEGIN{printf "%.2f", p*h*n}')
  sp=$(awk -v p="$price" -v h="$est_hours" -v n="$INSTANCE_COUNT" -v d="$SPOT_DISCOUNT" 'BEGIN{printf "%.2f", p*h*n*(1-d)}')
  say "training job $job"
  say "  config $CONFIG; hyperparameters $(jq -c . <<<"$hp")"
  say "  image $IMAGE; role $ROLE_ARN"
  say "  data $data_s3; checkpoints $ckpt_s3; model to $out_s3/$job/output/model.tar.gz"
  say "cost estimate, $( ((INSTANCE_COUNT > 1)) && echo "$INSTANCE_COUNT x " )$TRAIN_INSTANCE at \$$price/hour on-demand (us-east-1, approximate), for $est_hours h$( [[ -n $hours ]] && echo "" || echo " (the max runtime; --hours for your estimate)"):"
  say "  on-demand:    \$$od"
  say "  managed spot: ~\$$sp  (ASSUMING a $(awk -v d="$SPOT_DISCOUNT" 'BEGIN{printf "%g", d*100}')% spot discount; the real one varies)"
  if ((spot)); then
    say "  this job: managed spot, at most $MAX_RUNTIME s of training within $MAX_WAIT s (waits for capacity, resumes from checkpoints after interruptions)"
  else
    say "  this job: on-demand (--no-spot), at most $MAX_RUNTIME s"
  fi
  confirm "Start training job $job?" || die "cancelled (pass --yes to skip this question)"
  aws_run sagemaker create-training-job --cli-input-json "file://$TMP/create-training-job.json"
  if ((!DRY_RUN)); then
    say "started $(jq -r .TrainingJobArn <<<"$AWS_OUT")"
    say "follow it: $PROG follow $job"
  fi
}

# ---- follow ---------------------------------------------------------------------------------------------------
declare -A LOG_TOKENS=()

follow_logs() { # job
  local job=$1 s tok next n pages
  if ! aws_try logs describe-log-streams --log-group-name "$LOG_GROUP" --log-stream-name-prefix "$job/"; then
    [[ $AWS_ERROR_CODE == ResourceNotFoundException || $AWS_ERROR_CODE == DryRun ]] && return 0
    aws_report logs describe-log-streams
    return 1
  fi
  local streams=()
  mapfile -t streams < <(jq -r '.logStreams[]?.logStreamName' <<<"$AWS_OUT" | sort)
  for s in "${streams[@]+"${streams[@]}"}"; do
    tok=${LOG_TOKENS[$s]:-}
    pages=0
    while ((pages++ < 100)); do
      local args=(--log-group-name "$LOG_GROUP" --log-stream-name "$s" --start-from-head)
      [[ -z $tok ]] || args+=(--next-token "$tok")
      aws_run logs get-log-events "${args[@]}" || return 1
      n=$(jq '.events | length' <<<"$AWS_OUT")
      jq -r '.events[].message' <<<"$AWS_OUT" | sed "s|^|[${s#"$job"/}] |"
      next=$(jq -r '.nextForwardToken // empty' <<<"$AWS_OUT")
      [[ -n $next && $next != "$tok" ]] || break
      tok=$next
      ((n > 0)) || break
    done
    LOG_TOKENS[$s]=$tok
  done
}

follow_interrupted() {
  note "stopped following $FOLLOW_JOB; the job goes on ('$PROG stop $FOLLOW_JOB' stops it)"
  exit 130
}

FOLLOW_JOB=""
cmd_follow() {
  local job="" logs=1
  while (($#)); do
    split_opt "$@" && set -- "${SPLIT[@]}"
    case "$1" in
      --poll) need_value "$@"; POLL=$2; shift 2 ;;
      --no-logs) logs=0; shift ;;
      -h | --help) help_follow; exit 0 ;;
      -*) global_or_bad "$@"; shift "$NSHIFT" ;;
      *) [[ -z $job ]] || bad_usage "unexpected argument '$1'"; job=$1; shift ;;
    esac
  done
  [[ -n $job ]] || bad_usage "follow needs a job name"
  [[ $POLL =~ ^[0-9]+([.][0-9]+)?$ ]] || bad_usage "--poll must be a number of seconds, not '$POLL'"
  command -v jq >/dev/null || die "jq is not installed (Debian: apt-get install jq)"
  FOLLOW_JOB=$job
  trap follow_interrupted INT TERM

  if ((DRY_RUN)); then
    aws_run sagemaker describe-training-job --training-job-name "$job"
    ((logs)) && follow_logs "$job"
    return 0
  fi
  local printed=0 last_state="" last_metrics="" status secondary state metrics n i
  while :; do
    aws_run sagemaker describe-training-job --training-job-name "$job" || exit 1
    local desc=$AWS_OUT
    status=$(jq -r .TrainingJobStatus <<<"$desc")
    secondary=$(jq -r '.SecondaryStatus // "-"' <<<"$desc")
    state="$status / $secondary"
    [[ $state == "$last_state" ]] || say "job $job: $state"
    last_state=$state
    n=$(jq '.SecondaryStatusTransitions // [] | length' <<<"$desc")
    for ((i = printed; i < n; i++)); do
      jq -r --argjson i "$i" '.SecondaryStatusTransitions[$i] |
        "  \(.StartTime | if type == "number" then (floor | todate) else . end)  \(.Status)\(if .StatusMessage then ": " + .StatusMessage else "" end)"' <<<"$desc"
    done
    printed=$n
    if ((logs)); then follow_logs "$job" || exit 1; fi
    metrics=$(jq -r '[.FinalMetricDataList // [] | .[] | "\(.MetricName)=\(.Value)"] | join(" ")' <<<"$desc")
    if [[ -n $metrics && $metrics != "$last_metrics" ]]; then say "metrics: $metrics"; fi
    last_metrics=$metrics
    case "$status" in
      Completed)
        say "job $job completed: model $(jq -r '.ModelArtifacts.S3ModelArtifacts // "-"' <<<"$desc")"
        jq -r 'if .BillableTimeInSeconds then "billable \(.BillableTimeInSeconds) s of \(.TrainingTimeInSeconds // "?") s training" else empty end' <<<"$desc"
        return 0 ;;
      Failed)
        say "job $job failed: $(jq -r '.FailureReason // "no reason given"' <<<"$desc")"
        return 1 ;;
      Stopped)
        say "job $job was stopped$(jq -r 'if .FailureReason then ": " + .FailureReason else "" end' <<<"$desc")"
        return 1 ;;
    esac
    sleep "$POLL" &
    wait $! || true
  done
}

# ---- invoke ---------------------------------------------------------------------------------------------------
image_type() { # file -> image/png | image/jpeg
  local magic
  magic=$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')
  case "$magic" in
    89504e470d0a1a0a*) echo image/png ;;
    ffd8ff*) echo image/jpeg ;;
    *) return 1 ;;
  esac
}

invoke_one() { # endpoint file -> 0 ok, 1 failed
  local ep=$1 f=$2 type
  [[ -f $f ]] || { note "$f: no such file"; return 1; }
  type=$(image_type "$f") || { note "$f: not a PNG or JPEG file (by its bytes)"; return 1; }
  aws_run sagemaker-runtime invoke-endpoint --endpoint-name "$ep" --content-type "$type" \
    --accept application/json --body "fileb://$f" "$TMP/answer.json" || return 1
  ((!DRY_RUN)) || return 0
  say "$f ($type):"
  if ! jq -e '.predictions[0].top_k | type == "array"' "$TMP/answer.json" >/dev/null 2>&1; then
    note "unexpected answer from $ep: $(head -c 500 "$TMP/answer.json")"
    return 1
  fi
  printf '  %4s  %5s  %-20s %s\n' rank class name probability
  jq -r '.predictions[0].top_k | to_entries[] | [.key + 1, .value.class, .value.name, .value.probability] | @tsv' \
    "$TMP/answer.json" | while IFS=$'\t' read -r rank cls name p; do
    printf '  %4s  %5s  %-20s %.4f\n' "$rank" "$cls" "$name" "$p"
  done
}

cmd_invoke() {
  local ep="" files=()
  while (($#)); do
    split_opt "$@" && set -- "${SPLIT[@]}"
    case "$1" in
      -h | --help) help_invoke; exit 0 ;;
      -*) global_or_bad "$@"; shift "$NSHIFT" ;;
      *) if [[ -z $ep ]]; then ep=$1; else files+=("$1"); fi; shift ;;
    esac
  done
  [[ -n $ep ]] || bad_usage "invoke needs an endpoint name and at least one image"
  ((${#files[@]})) || bad_usage "invoke needs at least one image"
  command -v jq >/dev/null || die "jq is not installed (Debian: apt-get install jq)"
  local f failed=0
  for f in "${files[@]}"; do invoke_one "$ep" "$f" || failed=1; done
  return "$failed"
}

# ---- deploy ---------------------------------------------------------------------------------------------------
make_test_image() { # -> path or failure
  [[ -f $ARCHIVE ]] && command -v "$BIN" >/dev/null 2>&1 || return 1
  "$BIN" data preview --archive "$ARCHIVE" --count 1 --columns 1 --scale 1 --set augment=none --set val_size=0 \
    --out "$TMP/test-image.png" >/dev/null 2>&1 || return 1
  echo "$TMP/test-image.png"
}

cmd_deploy() {
  local job="" model="" timeout=1800 image=""
  while (($#)); do
    split_opt "$@" && set -- "${SPLIT[@]}"
    case "$1" in
      --endpoint-name) need_value "$@"; ENDPOINT_NAME=$2; shift 2 ;;
      --model-name) need_value "$@"; model=$2; shift 2 ;;
      --instance-type) need_value "$@"; ENDPOINT_INSTANCE=$2; shift 2 ;;
      --image) need_value "$@"; image=$2; shift 2 ;;
      --role-arn) need_value "$@"; ROLE_ARN=$2; shift 2 ;;
      --bucket) need_value "$@"; BUCKET=$2; shift 2 ;;
      --prefix) need_value "$@"; PREFIX=$2; shift 2 ;;
      --test-image) need_value "$@"; TEST_IMAGE=$2; shift 2 ;;
      --poll) need_value "$@"; POLL=$2; shift 2 ;;
      --timeout) need_value "$@"; timeout=$2; shift 2 ;;
      -h | --help) help_deploy; exit 0 ;;
      -*) global_or_bad "$@"; shift "$NSHIFT" ;;
      *) [[ -z $job ]] || bad_usage "unexpected argument '$1'"; job=$1; shift ;;
    esac
  done
  [[ -n $job ]] || bad_usage "deploy needs a training job name"
  check_instance_type "$ENDPOINT_INSTANCE"
  [[ -n $model ]] || model=$job
  valid_name "$model" || bad_usage "invalid model name '$model' (1-63 characters [a-zA-Z0-9-]); pass --model-name"
  valid_name "$ENDPOINT_NAME" || bad_usage "invalid endpoint name '$ENDPOINT_NAME' (1-63 characters [a-zA-Z0-9-])"
  is_uint "$timeout" || bad_usage "--timeout must be a number of seconds"
  [[ $POLL =~ ^[0-9]+([.][0-9]+)?$ ]] || bad_usage "--poll must be a number of seconds, not '$POLL'"
  [[ -z $TEST_IMAGE || -f $TEST_IMAGE ]] || die "test image '$TEST_IMAGE' not found"
  command -v jq >/dev/null || die "jq is not installed (Debian: apt-get install jq)"

  local artifacts role status
  if aws_try sagemaker describe-training-job --training-job-name "$job"; then
    status=$(jq -r .TrainingJobStatus <<<"$AWS_OUT")
    [[ $status == Completed ]] || die "training job $job is $status, not Completed: nothing to deploy yet"
    artifacts=$(jq -r '.ModelArtifacts.S3ModelArtifacts // empty' <<<"$AWS_OUT")
    [[ -n $artifacts ]] || die "training job $job has no ModelArtifacts.S3ModelArtifacts"
    [[ -n $image ]] || image=$(jq -r .AlgorithmSpecification.TrainingImage <<<"$AWS_OUT")
    role=${ROLE_ARN:-$(jq -r .RoleArn <<<"$AWS_OUT")}
  elif [[ $AWS_ERROR_CODE == DryRun ]]; then
    need_bucket
    need_image "$ENDPOINT_INSTANCE"
    need_role_arn
    artifacts="s3://$BUCKET/$PREFIX/output/$job/output/model.tar.gz"
    [[ -n $image ]] || image=$IMAGE
    role=$ROLE_ARN
    say "# dry run: assuming $job completed with $artifacts"
  else
    aws_report sagemaker describe-training-job
    exit 1
  fi
  warn_gpu_image "$ENDPOINT_INSTANCE" "$image"

  if aws_try sagemaker describe-endpoint --endpoint-name "$ENDPOINT_NAME"; then
    die "endpoint $ENDPOINT_NAME exists already ($(jq -r .EndpointStatus <<<"$AWS_OUT")): pass --endpoint-name, or '$PROG cleanup --endpoint-name $ENDPOINT_NAME --keep-bucket' first"
  elif [[ $AWS_ERROR_CODE != ValidationException && $AWS_ERROR_CODE != DryRun ]]; then
    aws_report sagemaker describe-endpoint
    exit 1
  fi

  jq -n --arg name "$model" --arg image "$image" --arg data "$artifacts" --arg role "$role" '
    {ModelName: $name, PrimaryContainer: {Image: $image, ModelDataUrl: $data, Mode: "SingleModel"},
     ExecutionRoleArn: $role, Tags: [{Key: "project", Value: "cifar100"}]}' >"$TMP/create-model.json"
  jq -n --arg name "$model" --arg type "$ENDPOINT_INSTANCE" '
    {EndpointConfigName: $name, ProductionVariants: [{VariantName: "AllTraffic", ModelName: $name,
     InstanceType: $type, InitialInstanceCount: 1, InitialVariantWeight: 1.0}],
     Tags: [{Key: "project", Value: "cifar100"}]}' >"$TMP/create-endpoint-config.json"
  jq -n --arg name "$ENDPOINT_NAME" --arg config "$model" '
    {EndpointName: $name, EndpointConfigName: $config, Tags: [{Key: "project", Value: "cifar100"}]}' \
    >"$TMP/create-endpoint.json"

  local price
  price=$(instance_field "$ENDPOINT_INSTANCE" 6)
  say "deploying $artifacts"
  say "  model $model (image $image, run as 'serve'), endpoint $ENDPOINT_NAME on 1 x $ENDPOINT_INSTANCE"
  say "  an endpoint costs about \$$price/hour (approximate) until deleted: '$PROG cleanup --endpoint-name $ENDPOINT_NAME'"
  aws_run sagemaker create-model --cli-input-json "file://$TMP/create-model.json"
  aws_run sagemaker create-endpoint-config --cli-input-json "file://$TMP/create-endpoint-config.json"
  aws_run sagemaker create-endpoint --cli-input-json "file://$TMP/create-endpoint.json"
  if ((DRY_RUN)); then
    aws_run sagemaker describe-endpoint --endpoint-name "$ENDPOINT_NAME"
    [[ -n $TEST_IMAGE ]] && invoke_one "$ENDPOINT_NAME" "$TEST_IMAGE"
    return 0
  fi

  local deadline=$((SECONDS + timeout)) last="" ep_status
  while :; do
    aws_run sagemaker describe-endpoint --endpoint-name "$ENDPOINT_NAME" || exit 1
    ep_status=$(jq -r .EndpointStatus <<<"$AWS_OUT")
    [[ $ep_status == "$last" ]] || say "endpoint $ENDPOINT_NAME: $ep_status"
    last=$ep_status
    case "$ep_status" in
      InService) break ;;
      Failed | OutOfService | Deleting)
        die "endpoint $ENDPOINT_NAME is $ep_status: $(jq -r '.FailureReason // "no reason given"' <<<"$AWS_OUT") ('$PROG cleanup --endpoint-name $ENDPOINT_NAME --keep-bucket' removes it)" ;;
    esac
    ((SECONDS < deadline)) || die "endpoint $ENDPOINT_NAME not InService after $timeout s (still $ep_status)"
    sleep "$POLL"
  done

  local test_image=$TEST_IMAGE
  [[ -n $test_image ]] || test_image=$(make_test_image) || test_image=""
  if [[ -z $test_image ]]; then
    say "no test image (--test-image, or the archive and cifar100 binary): not invoking"
  else
    invoke_one "$ENDPOINT_NAME" "$test_image"
  fi
  say "endpoint $ENDPOINT_NAME is in service: $PROG invoke $ENDPOINT_NAME IMAGE.png"
}

# ---- stop and cleanup -----------------------------------------------------------------------------------------
cmd_stop() {
  local job=""
  while (($#)); do
    split_opt "$@" && set -- "${SPLIT[@]}"
    case "$1" in
      -h | --help) help_stop; exit 0 ;;
      -*) global_or_bad "$@"; shift "$NSHIFT" ;;
      *) [[ -z $job ]] || bad_usage "unexpected argument '$1'"; job=$1; shift ;;
    esac
  done
  [[ -n $job ]] || bad_usage "stop needs a job name"
  confirm "Stop training job $job?" || die "cancelled (pass --yes to skip this question)"
  aws_run sagemaker stop-training-job --training-job-name "$job"
  ((DRY_RUN)) || say "stopping $job: it writes a checkpoint and exits; '$PROG follow $job' shows the end"
}

cmd_cleanup() {
  local keep_bucket=0 model=""
  while (($#)); do
    split_opt "$@" && set -- "${SPLIT[@]}"
    case "$1" in
      --endpoint-name) need_value "$@"; ENDPOINT_NAME=$2; shift 2 ;;
      --model-name) need_value "$@"; model=$2; shift 2 ;;
      --bucket) need_value "$@"; BUCKET=$2; shift 2 ;;
      --prefix) need_value "$@"; PREFIX=$2; shift 2 ;;
      --keep-bucket) keep_bucket=1; shift ;;
      -h | --help) help_cleanup; exit 0 ;;
      *) global_or_bad "$@"; shift "$NSHIFT" ;;
    esac
  done
  [[ -z $BUCKET ]] || check_bucket_name "$BUCKET"
  command -v jq >/dev/null || die "jq is not installed (Debian: apt-get install jq)"

  local config="" models=()
  if aws_try sagemaker describe-endpoint --endpoint-name "$ENDPOINT_NAME"; then
    config=$(jq -r .EndpointConfigName <<<"$AWS_OUT")
    if aws_try sagemaker describe-endpoint-config --endpoint-config-name "$config"; then
      mapfile -t models < <(jq -r '.ProductionVariants[].ModelName' <<<"$AWS_OUT")
    fi
    aws_run sagemaker delete-endpoint --endpoint-name "$ENDPOINT_NAME"
    say "deleted endpoint $ENDPOINT_NAME"
  elif [[ $AWS_ERROR_CODE == DryRun ]]; then
    config=${model:-$ENDPOINT_NAME}
    models=("$config")
  elif [[ $AWS_ERROR_CODE == ValidationException ]]; then
    say "no endpoint $ENDPOINT_NAME"
  else
    aws_report sagemaker describe-endpoint
    exit 1
  fi
  if [[ -n $model ]]; then
    [[ -n $config ]] || config=$model
    [[ " ${models[*]+"${models[*]}"} " == *" $model "* ]] || models+=("$model")
  fi
  if [[ -n $config ]]; then
    if aws_try sagemaker delete-endpoint-config --endpoint-config-name "$config" || [[ $AWS_ERROR_CODE == DryRun ]]; then
      ((DRY_RUN)) || say "deleted endpoint config $config"
    elif [[ $AWS_ERROR_CODE == ValidationException ]]; then
      say "no endpoint config $config"
    else
      aws_report sagemaker delete-endpoint-config
      exit 1
    fi
  fi
  local m
  for m in "${models[@]+"${models[@]}"}"; do
    if aws_try sagemaker delete-model --model-name "$m" || [[ $AWS_ERROR_CODE == DryRun ]]; then
      ((DRY_RUN)) || say "deleted model $m"
    elif [[ $AWS_ERROR_CODE == ValidationException ]]; then
      say "no model $m"
    else
      aws_report sagemaker delete-model
      exit 1
    fi
  done

  if ((!keep_bucket)); then
    need_bucket
    if aws_try s3api head-bucket --bucket "$BUCKET" || [[ $AWS_ERROR_CODE == DryRun ]]; then
      if confirm "Delete bucket $BUCKET and EVERY object in it (data, checkpoints, models)?"; then
        aws_run s3 rb "s3://$BUCKET" --force
        ((DRY_RUN)) || say "deleted bucket $BUCKET"
      else
        say "bucket $BUCKET kept"
      fi
    elif [[ $AWS_ERROR_CODE == 404 || $AWS_ERROR_CODE == NotFound || $AWS_ERROR_CODE == NoSuchBucket ]]; then
      say "no bucket $BUCKET"
    else
      aws_report s3api head-bucket
      exit 1
    fi
  fi
  say "kept: the role and the ECR repository; to delete them:"
  say "  aws iam delete-role-policy --role-name $ROLE_NAME --policy-name cifar100-access-${BUCKET:-BUCKET}"
  say "  aws iam delete-role --role-name $ROLE_NAME"
  say "  aws ecr delete-repository --repository-name $REPO --force"
}

# ---- option parsing ----------------------------------------------------------------------------------------------
# split_opt ARGS...: "--opt=value" becomes "--opt" "value" (in SPLIT); fails when $1 has no "=".
SPLIT=()
split_opt() {
  [[ $1 == --*=* ]] || return 1
  SPLIT=("${1%%=*}" "${1#*=}" "${@:2}")
}

need_value() { (($# >= 2)) || bad_usage "$1 needs a value"; }

# global_or_bad ARGS...: handles a global option at $1 (NSHIFT = arguments used) or fails with the usage.
NSHIFT=0
global_or_bad() {
  case "$1" in
    --region) need_value "$@"; REGION=$2; NSHIFT=2 ;;
    --profile) need_value "$@"; PROFILE=$2; NSHIFT=2 ;;
    --dry-run) DRY_RUN=1; NSHIFT=1 ;;
    -y | --yes) YES=1; NSHIFT=1 ;;
    *) bad_usage "unknown option '$1'" ;;
  esac
}

main() {
  local cmd=""
  while (($#)); do
    split_opt "$@" && set -- "${SPLIT[@]}"
    case "$1" in
      -h | --help) usage; exit 0 ;;
      -*) global_or_bad "$@"; shift "$NSHIFT" ;;
      *) cmd=$1; shift; break ;;
    esac
  done
  case "$cmd" in
    setup | train | follow | deploy | invoke | stop | cleanup) CURRENT_CMD=$cmd; "cmd_$cmd" "$@" ;;
    "") bad_usage "no command given" ;;
    help) usage ;;
    *) bad_usage "unknown command '$cmd'" ;;
  esac
}

main "$@"
