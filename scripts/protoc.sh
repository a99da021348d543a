#!/usr/bin/env bash
# Regenerates messages/*.pb.go from messages/*.proto.
#
# Fetches a pinned protoc from Maven Central into .cache/protoc/ and installs
# protoc-gen-go (at the google.golang.org/protobuf version required by go.mod)
# into .cache/bin/. Both are cached; nothing is installed system-wide and no
# binary is ever committed (.cache/ is ignored).
#
# Usage: scripts/protoc.sh          (from anywhere inside the repository)
# Env:   PROTOC_VERSION  protoc release to use (default below; the checksum
#                        is only verified for the default version).
set -euo pipefail

PROTOC_VERSION="${PROTOC_VERSION:-4.33.5}"
# SHA-256 of protoc-4.33.5-linux-x86_64.exe as published on Maven Central.
PROTOC_SHA256_DEFAULT="e8d496f7dacade5bf42a11f4fbeb61e9bdfddd494fd292f5f1881ddc169e69cf"
PROTOC_DEFAULT_VERSION="4.33.5"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) classifier="linux-x86_64" ;;
  Linux-aarch64) classifier="linux-aarch_64" ;;
  Darwin-x86_64) classifier="osx-x86_64" ;;
  Darwin-arm64) classifier="osx-aarch_64" ;;
  *) echo "protoc.sh: unsupported platform $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac

cache="$root/.cache"
protoc_dir="$cache/protoc/$PROTOC_VERSION"
protoc="$protoc_dir/protoc"
mkdir -p "$protoc_dir" "$cache/bin"

if [[ ! -x "$protoc" ]]; then
  artifact="protoc-$PROTOC_VERSION-$classifier.exe"
  url="https://repo1.maven.org/maven2/com/google/protobuf/protoc/$PROTOC_VERSION/$artifact"
  tmp="$protoc_dir/$artifact.tmp"
  echo "protoc.sh: fetching $artifact" >&2
  if ! curl -fsSL --retry 3 -o "$tmp" "$url"; then
    # Fall back to Maven itself (honours a local settings.xml / mirror).
    echo "protoc.sh: curl failed, trying mvn dependency:copy" >&2
    mvn -q dependency:copy \
      -Dartifact="com.google.protobuf:protoc:$PROTOC_VERSION:exe:$classifier" \
      -DoutputDirectory="$protoc_dir" -Dmdep.stripVersion=false
    mv "$protoc_dir/$artifact" "$tmp"
  fi
  if [[ "$PROTOC_VERSION" == "$PROTOC_DEFAULT_VERSION" && "$classifier" == "linux-x86_64" ]]; then
    got="$(sha256sum "$tmp" | cut -d' ' -f1)"
    if [[ "$got" != "$PROTOC_SHA256_DEFAULT" ]]; then
      rm -f "$tmp"
      echo "protoc.sh: checksum mismatch for $artifact: got $got" >&2
      exit 1
    fi
  fi
  chmod +x "$tmp"
  mv "$tmp" "$protoc"
fi

# protoc-gen-go must match the protobuf runtime in go.mod.
pgg_version="$(go list -m -f '{{.Version}}' google.golang.org/protobuf)"
pgg="$cache/bin/protoc-gen-go"
if [[ ! -x "$pgg" ]] || ! "$pgg" --version 2>/dev/null | grep -qF "$pgg_version"; then
  echo "protoc.sh: installing protoc-gen-go $pgg_version" >&2
  GOBIN="$cache/bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$pgg_version"
fi

"$protoc" --version >&2
PATH="$cache/bin:$PATH" "$protoc" \
  --proto_path=. \
  --go_out=. --go_opt=paths=source_relative \
  messages/*.proto
echo "protoc.sh: regenerated $(ls messages/*.pb.go | tr '\n' ' ')" >&2
