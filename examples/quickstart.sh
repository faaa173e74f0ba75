#!/bin/sh
# berth on one machine, from nothing to a sample app served through nginx (run as root, Debian 12):
#   control plane + agent on loopback, a private nginx on port 8088, the app in examples/hello
#   pushed to a local Git repo. Everything lives in $BERTH_QUICKSTART_DIR (default /tmp/berth-quickstart);
#   `examples/quickstart.sh stop` stops it again.
set -eu
cd "$(dirname "$0")/.."
ROOT_DIR=$(pwd)
QS=${BERTH_QUICKSTART_DIR:-/tmp/berth-quickstart}
PORT=${BERTH_QUICKSTART_HTTP_PORT:-8088}
CP_PORT=${BERTH_QUICKSTART_CP_PORT:-8089}
BERTH="node $ROOT_DIR/dist/cli/main.js"

step() { printf '\n==> %s\n' "$*"; }

stop() {
  for f in "$QS/agent.pid" "$QS/cp.pid"; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  [ -f "$QS/nginx/nginx.pid" ] && nginx -s quit -p "$QS/nginx" -c nginx.conf 2>/dev/null || true
  ids=$(docker ps -aq --filter label=berth.managed=true --filter label=berth.app=hello)
  [ -n "$ids" ] && docker rm -f $ids >/dev/null
  echo "stopped; data left in $QS"
}
if [ "${1:-}" = stop ]; then stop; exit 0; fi

step "installing packages (docker.io nginx git busybox-static) when missing"
for p in docker.io nginx git busybox-static; do
  dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p"; }
done
if ! docker info >/dev/null 2>&1; then
  step "starting the Docker engine"
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  until docker info >/dev/null 2>&1; do sleep 0.2; done
fi

step "building berth"
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run build --silent

step "making a local base image for the sample app (no registry needed)"
if ! docker image inspect berth-sample/busybox:latest >/dev/null 2>&1; then
  img=$(mktemp -d)
  mkdir -p "$img/bin" "$img/www" "$img/tmp"
  cp /bin/busybox "$img/bin/busybox"
  for a in sh httpd ls cat echo sleep true false; do ln -s busybox "$img/bin/$a"; done
  tar -C "$img" -c . | docker import - berth-sample/busybox:latest >/dev/null
  rm -rf "$img"
fi

mkdir -p "$QS"
step "starting the control plane on 127.0.0.1:$CP_PORT"
if ! [ -f "$QS/cp.pid" ] || ! kill -0 "$(cat "$QS/cp.pid")" 2>/dev/null; then
  $BERTH control-plane --data "$QS/cp" --listen "127.0.0.1:$CP_PORT" >>"$QS/control-plane.log" 2>&1 &
  echo $! >"$QS/cp.pid"
  until curl -fs "http://127.0.0.1:$CP_PORT/healthz" >/dev/null 2>&1; do sleep 0.2; done
fi
export BERTH_URL="http://127.0.0.1:$CP_PORT"
BERTH_TOKEN=$(cat "$QS/cp/admin-token")
export BERTH_TOKEN

export BERTH_DATA="$QS/agent" BERTH_NGINX_PREFIX="$QS/nginx" BERTH_HTTP_PORT="$PORT"
# No HTTPS here: hello.localhost cannot get a public certificate (set BERTH_HTTPS_PORT and BERTH_ACME_* for real domains).
export BERTH_HTTPS_PORT=0
if ! [ -f "$QS/agent/agent.json" ]; then
  step "enrolling this machine as server 'local'"
  token=$($BERTH server add local --json | node -e 'process.stdin.on("data",d=>console.log(JSON.parse(d).joinToken))')
  $BERTH agent join "$BERTH_URL" "$token" --name local
fi
if ! [ -f "$QS/agent.pid" ] || ! kill -0 "$(cat "$QS/agent.pid")" 2>/dev/null; then
  step "starting the agent (private nginx on port $PORT)"
  $BERTH agent >>"$QS/agent.log" 2>&1 &
  echo $! >"$QS/agent.pid"
fi

step "pushing examples/hello to a local Git repo"
if ! [ -d "$QS/hello.git" ]; then
  git init --quiet --bare --initial-branch=main "$QS/hello.git"
  work=$(mktemp -d)
  cp -r examples/hello/. "$work/"
  git -C "$work" init --quiet --initial-branch=main
  git -C "$work" add -A
  git -C "$work" -c user.name=berth -c user.email=quickstart@berth.invalid commit --quiet -m "sample app"
  git -C "$work" push --quiet "$QS/hello.git" HEAD:refs/heads/main
  rm -rf "$work"
fi

step "creating the app and deploying it"
$BERTH app show hello >/dev/null 2>&1 || $BERTH app create hello --repo "file://$QS/hello.git" --server local
$BERTH domain ls hello --json | grep -q hello.localhost || $BERTH domain add hello hello.localhost
$BERTH deploy hello --wait

step "the app, through nginx"
curl -fsS -H 'Host: hello.localhost' "http://127.0.0.1:$PORT/"
printf '\nberth is running. Try:\n  export BERTH_URL=%s BERTH_TOKEN=%s\n  %s deployments hello\nStop it with: examples/quickstart.sh stop\n' "$BERTH_URL" "$BERTH_TOKEN" "$BERTH"
