#!/usr/bin/env bash
# Builds berth's release artefacts into dist/ and publishes nothing:
# static binaries for linux/amd64 and linux/arm64, tar.gz archives, .deb and
# .rpm packages and sha256 checksums (.goreleaser.yaml says how), and the
# container images berthlog/berth:<version>, :latest (amd64) and
# :<version>-arm64, in the local daemon (classic builder, nothing pushed).
#
# GoReleaser is installed with `go install` at a pinned version into a cache
# directory that survives between runs (BERTH_TOOLS_DIR, default
# ${XDG_CACHE_HOME:-$HOME/.cache}/berth-tools); the install is skipped when
# that version is already there.
#
# Then: `goreleaser check`, `goreleaser release --snapshot --clean`, a list of
# the artefacts with their sizes, and how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."

GORELEASER_VERSION=v2.15.1
TOOLS_DIR="${BERTH_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/berth-tools}"
# One directory per version: bumping GORELEASER_VERSION installs afresh and
# never runs a stale binary.
GORELEASER_BIN="$TOOLS_DIR/goreleaser-$GORELEASER_VERSION/goreleaser"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'release: FAILED: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

start=$(now)

# Go: the one on PATH, else /usr/local/go, else scripts/lib.sh's ensure_go
# (which installs Debian's golang-go when run as root).
if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    export PATH="/usr/local/go/bin:$PATH"
  elif [ -f scripts/lib.sh ]; then
    # shellcheck source=scripts/lib.sh
    . scripts/lib.sh
    ensure_go
  fi
fi
command -v go >/dev/null 2>&1 || die "no Go toolchain: put go on PATH or install it in /usr/local/go"
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
log "$(go version)"

# installed_version prints the module version a goreleaser binary was built
# from (read from its build info, without running it), or nothing.
installed_version() {
  [ -x "$1" ] || return 0
  go version -m "$1" 2>/dev/null |
    awk '$1 == "mod" && $2 == "github.com/goreleaser/goreleaser/v2" { print $3 }'
}

t0=$(now)
have=$(installed_version "$GORELEASER_BIN")
if [ "$have" = "$GORELEASER_VERSION" ]; then
  install_how="cached"
  log "goreleaser $GORELEASER_VERSION already installed: $GORELEASER_BIN"
else
  install_how="installed"
  log "installing goreleaser $GORELEASER_VERSION into $(dirname "$GORELEASER_BIN") (first time: several minutes)"
  mkdir -p "$(dirname "$GORELEASER_BIN")"
  # -trimpath keeps the cached binary independent of where it was built.
  GOBIN="$(dirname "$GORELEASER_BIN")" CGO_ENABLED=0 \
    go install -trimpath "github.com/goreleaser/goreleaser/v2@$GORELEASER_VERSION" ||
    die "go install github.com/goreleaser/goreleaser/v2@$GORELEASER_VERSION failed"
  have=$(installed_version "$GORELEASER_BIN")
  [ "$have" = "$GORELEASER_VERSION" ] ||
    die "installed goreleaser reports version '${have:-unknown}', want $GORELEASER_VERSION"
fi
t_install=$(secs "$t0" "$(now)")

# goreleaser reads the commit, its date and the remote URL from git; in a
# snapshot, any failure among them (a clone without a remote, say) makes it
# stamp "none" for every one. Without a remote, give this process alone
# (GIT_CONFIG_* environment, git >= 2.31) the project's URL: the repository's
# configuration is left as it is and nothing is fetched.
git rev-parse --verify -q HEAD >/dev/null || die "not a git repository with a commit: goreleaser needs one"
if [ -z "$(git remote)" ]; then
  module=$(go list -m)
  n=${GIT_CONFIG_COUNT:-0}
  export "GIT_CONFIG_KEY_$n=remote.origin.url" "GIT_CONFIG_VALUE_$n=https://$module.git"
  export GIT_CONFIG_COUNT=$((n + 1))
  log "no git remote: using https://$module.git for this run only"
fi

# The container image (.goreleaser.yaml, dockers): built by the daemon with
# the classic builder (no buildx needed), with the build host's CA bundle.
docker info >/dev/null 2>&1 || die "the Docker daemon does not answer (docker info): it builds the container image"
export DOCKER_BUILDKIT=0
if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then
  if [ -f scripts/lib.sh ] && [ "$(id -u)" = 0 ]; then
    # shellcheck source=scripts/lib.sh
    . scripts/lib.sh
    apt_install ca-certificates
  fi
  [ -s /etc/ssl/certs/ca-certificates.crt ] ||
    die "no /etc/ssl/certs/ca-certificates.crt for the image: install ca-certificates"
fi

# Like dist/, the images of earlier snapshots go (their tags and :latest, so
# that no untagged image is left behind): only this run's remain.
old_images=$(docker image ls --format '{{.Repository}}:{{.Tag}}' berthlog/berth | grep -E -- '-snapshot-|:latest(-arm64)?$' || true)
if [ -n "$old_images" ]; then
  log "removing earlier snapshot images: $(echo $old_images)"
  # shellcheck disable=SC2086
  docker rmi $old_images >/dev/null || die "cannot remove the earlier snapshot images"
fi

t0=$(now)
log "goreleaser check"
"$GORELEASER_BIN" check || die "goreleaser check: .goreleaser.yaml is invalid or uses deprecated options"
t_check=$(secs "$t0" "$(now)")

t0=$(now)
log "goreleaser release --snapshot --clean (builds everything, publishes nothing)"
"$GORELEASER_BIN" release --snapshot --clean || die "goreleaser release --snapshot --clean"
t_release=$(secs "$t0" "$(now)")

# Sanity checks of what was built.
(cd dist && sha256sum --quiet -c checksums.txt) || die "dist/checksums.txt does not match the artefacts"
for arch in amd64 arm64; do
  ls dist/*_linux_"$arch".tar.gz >/dev/null 2>&1 || die "no tar.gz archive for linux/$arch"
  ls dist/*_"$arch".deb >/dev/null 2>&1 || die "no .deb for linux/$arch"
done
ls dist/*.x86_64.rpm dist/*.aarch64.rpm >/dev/null 2>&1 || die "missing .rpm for x86_64 or aarch64"
if [ "$(uname -m)" = x86_64 ]; then
  bin=$(ls dist/berth_linux_amd64*/berth)
  v=$("$bin" version) || die "$bin version failed"
  case "$v" in
    *" dev "* | *"commit none"* | *"built unknown"*) die "$bin version is not stamped: $v" ;;
  esac
  log "$v"
  if command -v file >/dev/null 2>&1; then
    file "$bin" | grep -q 'statically linked' || die "$bin is not statically linked: $(file "$bin")"
  fi
fi

# The images: tagged, for linux/amd64 and linux/arm64, running as non-root;
# the amd64 one starts (berth version).
image_version=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' dist/metadata.json | head -n 1)
[ -n "$image_version" ] || die "no version in dist/metadata.json"
image_version=${image_version//+/-}
for spec in "$image_version:amd64" "latest:amd64" "$image_version-amd64:amd64" "$image_version-arm64:arm64" "latest-arm64:arm64"; do
  tag=${spec%:*} arch=${spec##*:}
  got=$(docker image inspect -f '{{.Os}}/{{.Architecture}} {{.Config.User}}' "berthlog/berth:$tag") ||
    die "no image berthlog/berth:$tag"
  [ "$got" = "linux/$arch 65532:65532" ] || die "berthlog/berth:$tag is $got, want linux/$arch 65532:65532"
done
if [ "$(uname -m)" = x86_64 ]; then
  iv=$(docker run --rm --network none --entrypoint /usr/bin/berth "berthlog/berth:$image_version" version) ||
    die "berthlog/berth:$image_version does not run"
  log "image berthlog/berth:$image_version: $iv"
fi

human() { numfmt --to=iec-i --suffix=B --format='%.1f' "$1"; }
echo
echo "artefacts in dist/:"
for f in dist/*.tar.gz dist/*.deb dist/*.rpm dist/checksums.txt dist/berth_linux_*/berth; do
  [ -f "$f" ] || continue
  size=$(stat -c %s "$f")
  printf '  %-60s %10s bytes  %8s\n' "$f" "$size" "$(human "$size")"
done
echo
echo "images (local, not pushed):"
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' berthlog/berth | sort | sed 's/^/  /'
echo
printf 'goreleaser %s: %s in %ss\n' "$GORELEASER_VERSION" "$install_how" "$t_install"
printf 'goreleaser check: %ss\n' "$t_check"
printf 'goreleaser release --snapshot --clean: %ss\n' "$t_release"
printf 'release.sh total: %ss\n' "$(secs "$start" "$(now)")"
