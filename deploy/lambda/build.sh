#!/usr/bin/env bash
# Builds the AWS Lambda deployment zip for the provided.al2023 runtime: one
# static linux binary named bootstrap (maskpredictor; started as bootstrap
# it runs `maskpredictor lambda`). Nothing is downloaded but Go modules.
#
#   deploy/lambda/build.sh [OUT_DIR]          # → OUT_DIR/maskpredictor-lambda.zip (default dist/lambda)
#   MODEL=model.bin deploy/lambda/build.sh    # also pack a model; set MODEL_URI=/var/task/model.bin
#   GOARCH=arm64 deploy/lambda/build.sh       # for an arm64 (Graviton) function
#
# Deploy (no script needed beyond this one; see deploy/lambda/README.md):
#   aws lambda update-function-code --function-name mask-component-predictor \
#       --zip-file fileb://dist/lambda/maskpredictor-lambda.zip
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-"$root/dist/lambda"}
mkdir -p "$out"
out=$(cd "$out" && pwd)
arch=${GOARCH:-amd64}
zipfile="$out/maskpredictor-lambda.zip"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "lambda: building bootstrap (linux/$arch, static, -tags lambda.norpc)" >&2
(cd "$root" && GOOS=linux GOARCH="$arch" CGO_ENABLED=0 \
  go build -tags lambda.norpc -trimpath -ldflags "-s -w" -o "$work/bootstrap" ./cmd/maskpredictor)
chmod 0755 "$work/bootstrap"

files=(bootstrap)
if [ -n "${MODEL:-}" ]; then
  cp "$MODEL" "$work/model.bin"
  chmod 0644 "$work/model.bin"
  files+=(model.bin)
  echo "lambda: packing $MODEL as model.bin (set MODEL_URI=/var/task/model.bin)" >&2
fi

rm -f "$zipfile"
if ! command -v zip >/dev/null 2>&1; then
  echo "lambda: zip(1) is required (apt-get install zip / brew install zip)" >&2
  exit 1
fi
(cd "$work" && zip -q -X -9 "$zipfile" "${files[@]}")
echo "lambda: wrote $zipfile ($(du -h "$zipfile" | cut -f1))" >&2
echo "$zipfile"
