#!/usr/bin/env bash
# Fetch the AWS Lambda Runtime Interface Emulator (RIE) that ships inside the aws-sam-cli
# wheel on PyPI, for the runtime tests. Puts it in tests/runtimes/python/.cache/ where the
# tests look for it (or point KAPPA_RIE_BIN at any other copy).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="$here/.cache"
python="${PYTHON:-python3}"
mkdir -p "$cache"
case "$(uname -m)" in
    x86_64|amd64) arch=x86_64 ;;
    aarch64|arm64) arch=arm64 ;;
    *) echo "no RIE build for $(uname -m)" >&2; exit 1 ;;
esac
target="$cache/aws-lambda-rie-$arch"
if [ -x "$target" ]; then
    echo "$target"
    exit 0
fi
"$python" -m pip download --quiet --disable-pip-version-check --no-deps -d "$cache/wheel" aws-sam-cli
wheel="$(ls "$cache"/wheel/aws_sam_cli-*.whl | tail -n 1)"
"$python" - "$wheel" "$arch" "$target" <<'PY'
import sys, zipfile
wheel, arch, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as zf, open(target, "wb") as out:
    out.write(zf.read("samcli/local/rapid/aws-lambda-rie-" + arch))
PY
chmod +x "$target"
rm -rf "$cache/wheel"
echo "$target"
