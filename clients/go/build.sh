#!/usr/bin/env bash
# Builds bin/framewire-go-client in GOPATH mode against Debian's Go packages
# (golang-go, golang-google-grpc-dev, golang-google-protobuf-dev): no module
# download, no network. A GOPATH in build/ links this folder under its import path.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
gopath="$here/build/gopath"
link="$gopath/src/github.com/framewire/framewire/clients/go"
mkdir -p "$(dirname "$link")" "$here/bin"
ln -sfn "$here" "$link"
cd "$link"
GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" \
    GOCACHE="${GOCACHE:-$here/build/cache}" go build -o "$here/bin/framewire-go-client" .
