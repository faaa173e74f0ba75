#!/bin/sh
# Build berth's self-contained release tarball for this machine's platform:
#   release/berth-VERSION-linux-ARCH.tar.gz   compiled JS + production node_modules (better-sqlite3 compiled
#                                             for this Node ABI), install.sh, systemd units, bin/berth
#   release/berth-VERSION-linux-ARCH.tar.gz.sha256   "HASH  FILE" (sha256sum -c format)
#   release/berth-VERSION-linux-ARCH.json     {version, platform, arch, nodeVersion, nodeAbi, sha256, file}
# The control plane serves these to install.sh (see docs/install.md). Needs `npm ci` done and `tsc` run
# (`npm run build` does both steps). Works offline: node_modules is copied and pruned, never downloaded.
#
#   scripts/package.sh [--out DIR] [--version VERSION]
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)

OUT="$ROOT/release"
VERSION=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --version) VERSION="$2"; shift 2 ;;
    *) echo "package.sh: unknown option $1 (use --out DIR, --version VERSION)" >&2; exit 2 ;;
  esac
done

fail() { echo "package.sh: $*" >&2; exit 1; }

[ -f dist/cli/main.js ] || fail "dist/ is missing: run \`npx tsc -p .\` (or \`npm run build\`) first"
[ -d node_modules ] || fail "node_modules is missing: run \`npm ci\` first"
[ -f node_modules/better-sqlite3/build/Release/better_sqlite3.node ] || fail "better-sqlite3 is not compiled: run \`npm ci\` (or \`npm rebuild better-sqlite3\`)"

PLATFORM=$(node -p 'process.platform')
ARCH=$(node -p 'process.arch')
[ "$PLATFORM" = linux ] || fail "releases are built on linux (this is $PLATFORM)"
case "$ARCH" in x64|arm64) ;; *) fail "unsupported architecture $ARCH (x64 or arm64)" ;; esac
[ -n "$VERSION" ] || VERSION=$(node -p 'require("./package.json").version')
case "$VERSION" in *[!0-9A-Za-z.+-]*|'') fail "invalid version \"$VERSION\"" ;; esac
NODE_VERSION=$(node -p 'process.version')
NODE_ABI=$(node -p 'process.versions.modules')

NAME="berth-$VERSION-linux-$ARCH"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
STAGE=$(mktemp -d "${TMPDIR:-/tmp}/berth-package.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT INT TERM
TREE="$STAGE/berth-$VERSION"
mkdir -p "$TREE/dist" "$TREE/bin"

# Compiled code (tests and benchmarks stay out), without source maps' sources.
for d in cli agent control-plane shared; do cp -a "dist/$d" "$TREE/dist/"; done
cp package.json package-lock.json install.sh "$TREE/"
[ -f README.md ] && cp README.md "$TREE/"
cp -a systemd "$TREE/systemd"
[ -d docs ] && cp -a docs "$TREE/docs"

# Production dependencies: a copy of the installed tree, pruned offline to what the lockfile says production needs.
# Its contents (`node_modules/.`): a symlinked node_modules (a git worktree sharing one) is copied, not
# linked, so the prune below never touches the original.
mkdir "$TREE/node_modules"
cp -a node_modules/. "$TREE/node_modules/"
(cd "$TREE" && npm prune --omit=dev --offline --no-audit --no-fund --loglevel=error >/dev/null) || fail "npm prune --omit=dev failed"
# better-sqlite3: keep the compiled addon, drop the C sources and intermediate objects (~25 MB).
B="$TREE/node_modules/better-sqlite3"
rm -rf "$B/deps" "$B/src" "$B/build/Release/obj" "$B/build/Release/obj.target" "$B/build/Release/.deps" "$B/build/deps" \
  "$B/build/Release/sqlite3.a" "$B/build/Release/test_extension.node" "$B/build/Release/.forge-meta"
find "$B/build" \( -name '*.mk' -o -name 'Makefile' -o -name '*.Makefile' \) -exec rm -f {} + 2>/dev/null || true
[ -f "$B/build/Release/better_sqlite3.node" ] || fail "better_sqlite3.node got lost while pruning"

# The launcher: finds a node next to the install (install.sh links /opt/berth/bin/node) or on PATH.
cat > "$TREE/bin/berth" <<'EOF'
#!/bin/sh
# berth launcher from the release tarball: runs dist/cli/main.js with the Node.js this install uses.
here=$(cd "$(dirname "$0")/.." && pwd -P)
node="${BERTH_NODE:-}"
if [ -z "$node" ]; then
  if [ -x "$here/../../bin/node" ]; then node="$here/../../bin/node"; else node=node; fi
fi
exec "$node" "$here/dist/cli/main.js" "$@"
EOF
chmod 0755 "$TREE/bin/berth"

# A --version other than package.json's (e.g. a test building "the next release") is written into the tree.
(cd "$TREE" && V="$VERSION" node -e 'const f=require("fs");const p=JSON.parse(f.readFileSync("package.json","utf8"));if(p.version!==process.env.V){p.version=process.env.V;f.writeFileSync("package.json",JSON.stringify(p,null,2)+"\n")}')

cat > "$TREE/RELEASE.json" <<EOF
{"version":"$VERSION","platform":"linux","arch":"$ARCH","nodeVersion":"$NODE_VERSION","nodeAbi":"$NODE_ABI"}
EOF

# Smoke test: the packed tree loads its native module with this Node and answers --version.
got=$(cd "$STAGE" && node "$TREE/dist/cli/main.js" --version) || fail "the packed CLI does not start"
[ "$got" = "$VERSION" ] || fail "the packed CLI reports version $got, expected $VERSION"
(cd "$TREE" && node -e 'const D=require("better-sqlite3"); new D(":memory:").prepare("select 1").get()') || fail "better-sqlite3 does not load from the packed tree"

# Deterministic archive: sorted names, fixed owner and mtime.
TARBALL="$NAME.tar.gz"
tar -C "$STAGE" --sort=name --owner=0 --group=0 --numeric-owner --mtime='2000-01-01 00:00:00Z' \
  -cf - "berth-$VERSION" | gzip -n -6 > "$STAGE/$TARBALL"
mv -f "$STAGE/$TARBALL" "$OUT/$TARBALL.tmp"
mv -f "$OUT/$TARBALL.tmp" "$OUT/$TARBALL"
SHA=$(cd "$OUT" && sha256sum "$TARBALL" | cut -d' ' -f1)
printf '%s  %s\n' "$SHA" "$TARBALL" > "$OUT/$TARBALL.sha256"
cat > "$OUT/$NAME.json" <<EOF
{"version":"$VERSION","platform":"linux","arch":"$ARCH","nodeVersion":"$NODE_VERSION","nodeAbi":"$NODE_ABI","file":"$TARBALL","sha256":"$SHA"}
EOF
SIZE=$(du -h "$OUT/$TARBALL" | cut -f1)
echo "built $OUT/$TARBALL ($SIZE, sha256 $SHA, node $NODE_VERSION abi $NODE_ABI)"
