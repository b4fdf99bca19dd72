#!/usr/bin/env bash
# A real single-node Kubernetes 1.20 on 127.0.0.1 for taskfabric's tests, built from Debian's
# source package (see ../shared/ENGINES.md "Kubernetes 1.20.2").
#
#   cluster.sh build   build the binaries once into $CACHE (reused when present; waits for a
#                      build that another process runs)
#   cluster.sh up      build if needed, then start etcd, containerd, kube-apiserver,
#                      kube-scheduler, kube-controller-manager and kubelet; write $STATE/kubeconfig
#   cluster.sh down    stop all of them and unmount what kubelet mounted (idempotent)
#   cluster.sh import-image TAR   import one image (docker-archive or OCI tar) into the node
#   cluster.sh images  list the images of the node
#   cluster.sh status  print what runs (exit 0)
#
# Everything listens on 127.0.0.1. Every step is idempotent and the script works from nothing
# (it installs its Debian packages). Settings (environment):
#   TASKFABRIC_KUBE_CACHE   where the built binaries live  (/var/cache/taskfabric/kubernetes)
#   TASKFABRIC_KUBE_STATE   the running cluster's files     (/var/lib/taskfabric/kubernetes)
set -euo pipefail

CACHE=${TASKFABRIC_KUBE_CACHE:-/var/cache/taskfabric/kubernetes}
STATE=${TASKFABRIC_KUBE_STATE:-/var/lib/taskfabric/kubernetes}
BIN=$CACHE/bin
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet pause)
PACKAGES=(golang-go rsync dpkg-dev golang-github-modern-go-reflect2-dev etcd-server containerd runc
    containernetworking-plugins openssl make)
ETCD_PORT=23790
ETCD_PEER_PORT=23800
API_PORT=${TASKFABRIC_KUBE_API_PORT:-16443}

log() { printf '[cluster.sh %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
}

built() {
    local b
    for b in "${BINARIES[@]}"; do [[ -x $BIN/$b ]] || return 1; done
}

# ---------------------------------------------------------------------------------------------
# build: Debian's kubernetes source package, compiled with Debian's Go (CGO off: static binaries)
do_build() {
    mkdir -p "$CACHE"
    # One build at a time: a second caller (the tests while CI's background build runs) waits.
    exec 9>"$CACHE/.build.lock"
    if ! flock -n 9; then
        log "another build holds $CACHE/.build.lock: waiting for it"
        flock 9
    fi
    if built; then
        log "binaries present in $BIN"
        exec 9>&-
        return 0
    fi
    install_packages
    local work=$CACHE/build
    rm -rf "$work"
    mkdir -p "$work/lists/partial" "$work/src"
    # A deb-src list of our own, so /etc/apt stays untouched.
    local uris suites
    uris=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
    [[ -n "$uris" ]] || uris=$(awk '$1=="deb"{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    [[ -n "$uris" ]] || uris=http://deb.debian.org/debian
    suites=$(. /etc/os-release && echo "$VERSION_CODENAME")
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uris $suites main" \
        >"$work/sources.list"
    local apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o "Dir::State::Lists=$work/lists" -o DPkg::Lock::Timeout=600)
    log "fetching the kubernetes source package from $uris $suites"
    apt-get "${apt_opts[@]}" update -qq
    (cd "$work/src" && apt-get "${apt_opts[@]}" source --download-only kubernetes)
    local dsc
    dsc=$(ls "$work"/src/kubernetes_*.dsc | head -n 1)
    (cd "$work/src" && dpkg-source --no-check -x "$dsc" tree >/dev/null)
    local tree=$work/src/tree
    # Go 1.19 segfaults the apiserver with the vendored reflect2: use Debian's newer one.
    rm -rf "$tree/vendor/github.com/modern-go/reflect2"
    cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$tree/vendor/github.com/modern-go/reflect2"
    mkdir -p "$work/gopath/src/k8s.io"
    ln -s "$tree" "$work/gopath/src/k8s.io/kubernetes"
    log "compiling (about 7 minutes on 2 cores)"
    (
        cd "$work/gopath/src/k8s.io/kubernetes"
        export GOPATH=$work/gopath GOCACHE=$work/gocache CGO_ENABLED=0
        make WHAT="cmd/kube-apiserver cmd/kubelet cmd/kube-scheduler cmd/kube-controller-manager"
    ) >"$work/make.log" 2>&1 || { tail -n 40 "$work/make.log" >&2; die "the build failed (log: $work/make.log)"; }
    # The sandbox ("pause") container's program: a static Go binary that sleeps until signalled.
    mkdir -p "$work/pause"
    cat >"$work/pause/main.go" <<'GO'
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
GO
    (cd "$work/pause" && GOCACHE=$work/gocache GO111MODULE=off CGO_ENABLED=0 go build -o pause main.go)
    local out
    out=$(find "$tree/_output" -type d -path '*/bin' | head -n 1)
    rm -rf "$BIN.new"
    mkdir -p "$BIN.new"
    for b in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
        cp "$out/$b" "$BIN.new/$b"
    done
    cp "$work/pause/pause" "$BIN.new/pause"
    rm -rf "$BIN"
    mv "$BIN.new" "$BIN"
    "$BIN/kube-apiserver" --version >&2
    # Keep only the binaries: the build tree and Go's cache are ~2.5 GB.
    rm -rf "$work"
    log "built into $BIN"
    exec 9>&-
}


# ---------------------------------------------------------------------------------------------
# the running cluster: every process's pid, log and data under $STATE
PROCS=(etcd containerd kube-apiserver kube-controller-manager kube-scheduler kubelet)
CTR_SOCK=$STATE/containerd/containerd.sock
TOKEN=taskfabric-admin-token
KUBELET_TOKEN=taskfabric-kubelet-token

pid_of() { local f=$STATE/pids/$1; [[ -s $f ]] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"; }

start() { # name, command...
    local name=$1
    shift
    if pid_of "$name" >/dev/null; then
        log "$name already runs (pid $(pid_of "$name"))"
        return 0
    fi
    # (fd 9, the build lock, is not passed on: a daemon holding it would block later builds)
    setsid "$@" </dev/null >"$STATE/logs/$name.log" 2>&1 9>&- &
    echo $! >"$STATE/pids/$name"
    log "started $name (pid $!)"
}

wait_for() { # what, seconds, command...: run the command until it succeeds
    local what=$1 seconds=$2 i
    shift 2
    for ((i = 0; i < seconds * 4; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    die "$what did not come up within ${seconds}s (logs: $STATE/logs)"
}

api() { # method path [curl args...]: the API server as the admin
    local method=$1 path=$2
    shift 2
    curl -sS --fail --max-time 20 --cacert "$STATE/pki/ca.crt" -H "Authorization: Bearer $TOKEN" \
        -X "$method" "https://127.0.0.1:$API_PORT$path" "$@"
}

write_pki() {
    local pki=$STATE/pki
    [[ -s $pki/sa.key && -s $pki/apiserver.crt ]] && return 0
    mkdir -p "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=taskfabric-test-ca \
        -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj /CN=kube-apiserver \
        -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default\n' \
        >"$pki/san.ext"
    openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -days 3650 -extfile "$pki/san.ext" -out "$pki/apiserver.crt" 2>/dev/null
    openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
    # token,user,uid,"groups": the admin (tests, controllers, kubelet) and a user with no
    # rights at all (tests of 403 answers).
    cat >"$pki/tokens.csv" <<TOKENS
$TOKEN,taskfabric-admin,1,"system:masters"
$KUBELET_TOKEN,system:node:localhost,2,"system:nodes,system:masters"
taskfabric-nobody-token,taskfabric-nobody,3,""
TOKENS
}

write_kubeconfig() { # file token user
    cat >"$1" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: taskfabric-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $STATE/pki/ca.crt
users:
- name: $3
  user:
    token: $2
- name: nobody
  user:
    token: taskfabric-nobody-token
contexts:
- name: taskfabric-test
  context: {cluster: taskfabric-test, user: $3}
- name: taskfabric-test-nobody
  context: {cluster: taskfabric-test, user: nobody}
current-context: taskfabric-test
KUBECONFIG
}

write_containerd_config() {
    mkdir -p "$STATE/containerd" "$STATE/cni/bin" "$STATE/cni/conf"
    cat >"$STATE/containerd/config.toml" <<TOML
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$CTR_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:local"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$STATE/cni/bin"
    conf_dir = "$STATE/cni/conf"
TOML
    # Pods without hostNetwork get a network namespace with only `lo` and a dummy eth0
    # holding a link-local address (no connectivity): enough for the node to be Ready and for
    # such pods to run. Tests run their pods with hostNetwork.
    cat >"$STATE/cni/conf/10-taskfabric.conf" <<'CONF'
{"cniVersion": "0.4.0", "name": "taskfabric-isolated", "type": "taskfabric-isolated"}
CONF
    cat >"$STATE/cni/bin/taskfabric-isolated" <<'CNI'
#!/bin/sh
# A CNI plugin: lo up, and a dummy eth0 with a link-local /32 derived from the container id.
set -e
case "$CNI_COMMAND" in
VERSION)
    echo '{"cniVersion": "0.4.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0"]}' ;;
ADD)
    n=$(printf '%s' "$CNI_CONTAINERID" | cksum | cut -d' ' -f1)
    ip="169.254.$(( (n / 256) % 254 + 1 )).$(( n % 254 + 1 ))"
    nsenter --net="$CNI_NETNS" ip link set lo up
    nsenter --net="$CNI_NETNS" ip link add "$CNI_IFNAME" type dummy
    nsenter --net="$CNI_NETNS" ip addr add "$ip/32" dev "$CNI_IFNAME"
    nsenter --net="$CNI_NETNS" ip link set "$CNI_IFNAME" up
    cat <<RESULT
{"cniVersion": "0.4.0",
 "interfaces": [{"name": "$CNI_IFNAME", "sandbox": "$CNI_NETNS"}],
 "ips": [{"version": "4", "address": "$ip/32", "interface": 0}]}
RESULT
    ;;
DEL | CHECK) ;;
esac
CNI
    chmod +x "$STATE/cni/bin/taskfabric-isolated"
    ln -sf /usr/lib/cni/loopback "$STATE/cni/bin/loopback"
}

ctr_() { ctr --address "$CTR_SOCK" --namespace k8s.io "$@"; }

# The sandbox image: the static pause binary alone, as a docker-archive tar.
import_pause_image() {
    ctr_ images ls -q 2>/dev/null | grep -qx 'localhost/pause:local' && return 0
    local dir=$STATE/pause-image
    rm -rf "$dir"
    mkdir -p "$dir/rootfs"
    cp "$BIN/pause" "$dir/rootfs/pause"
    tar -C "$dir/rootfs" --owner=0 --group=0 -cf "$dir/layer.tar" pause
    local diff_id
    diff_id=$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)
    printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$diff_id" >"$dir/config.json"
    printf '[{"Config":"config.json","RepoTags":["localhost/pause:local"],"Layers":["layer.tar"]}]' \
        >"$dir/manifest.json"
    tar -C "$dir" -cf "$dir/pause.tar" manifest.json config.json layer.tar
    ctr_ images import "$dir/pause.tar" >/dev/null
    log "imported localhost/pause:local"
}

do_up() {
    do_build
    install_packages
    mkdir -p "$STATE"/{pids,logs,etcd,kubelet,kubelet-certs,volume-plugins}
    date +%s >"$STATE/started-at"
    write_pki
    write_kubeconfig "$STATE/kubeconfig" "$TOKEN" admin
    write_kubeconfig "$STATE/kubelet.kubeconfig" "$KUBELET_TOKEN" kubelet
    write_containerd_config
    # A test cluster keeps no state between runs: etcd starts empty (no pod of an earlier run
    # comes back).
    pid_of etcd >/dev/null || rm -rf "$STATE/etcd"

    start etcd etcd --name taskfabric --data-dir "$STATE/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "taskfabric=http://127.0.0.1:$ETCD_PEER_PORT" \
        --listen-metrics-urls "" --log-level warn
    start containerd containerd --config "$STATE/containerd/config.toml"
    wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
    start kube-apiserver "$BIN/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
        --insecure-port 0 \
        --tls-cert-file "$STATE/pki/apiserver.crt" --tls-private-key-file "$STATE/pki/apiserver.key" \
        --client-ca-file "$STATE/pki/ca.crt" \
        --token-auth-file "$STATE/pki/tokens.csv" --authorization-mode RBAC \
        --service-account-key-file "$STATE/pki/sa.pub" \
        --service-account-signing-key-file "$STATE/pki/sa.key" \
        --service-account-issuer https://kubernetes.default.svc \
        --service-cluster-ip-range 10.96.0.0/24 \
        --disable-admission-plugins ServiceAccount \
        --kubelet-preferred-address-types Hostname \
        --allow-privileged=true --profiling=false --audit-log-path ""
    wait_for containerd 30 ctr --address "$CTR_SOCK" version
    wait_for kube-apiserver 90 api GET /readyz
    import_pause_image
    start kube-controller-manager "$BIN/kube-controller-manager" \
        --kubeconfig "$STATE/kubeconfig" --bind-address 127.0.0.1 --port 0 \
        --leader-elect=false --cert-dir "$STATE/pki/controller-manager" \
        --controllers '*,-serviceaccount-token' --use-service-account-credentials=false \
        --profiling=false
    start kube-scheduler "$BIN/kube-scheduler" \
        --kubeconfig "$STATE/kubeconfig" --bind-address 127.0.0.1 --port 0 \
        --leader-elect=false --cert-dir "$STATE/pki/scheduler" --profiling=false
    # --sync-frequency: kubelet 1.20 can miss the graceful deletion of a pod whose container
    # started a moment before (its pod worker drops the update); its periodic sync of every
    # pod then stops it, so the period bounds how long a cancelled task runs on (default 1m).
    start kubelet "$BIN/kubelet" \
        --kubeconfig "$STATE/kubelet.kubeconfig" \
        --container-runtime remote --container-runtime-endpoint "unix://$CTR_SOCK" \
        --runtime-request-timeout 5m \
        --root-dir "$STATE/kubelet" --cert-dir "$STATE/kubelet-certs" \
        --volume-plugin-dir "$STATE/volume-plugins" \
        --hostname-override localhost \
        --address 127.0.0.1 --read-only-port 0 --healthz-bind-address 127.0.0.1 \
        --anonymous-auth=true --authorization-mode AlwaysAllow \
        --cgroup-driver cgroupfs --fail-swap-on=false --max-pods 250 \
        --image-gc-high-threshold 100 --image-gc-low-threshold 99 \
        --eviction-hard 'memory.available<100Mi,nodefs.available<1%,imagefs.available<1%' \
        --serialize-image-pulls=false --pod-infra-container-image localhost/pause:local \
        --sync-frequency 3s
    wait_for "the node" 120 node_ready
    wait_for "the default service account" 60 api GET /api/v1/namespaces/default/serviceaccounts/default
    log "up: KUBECONFIG=$STATE/kubeconfig (API https://127.0.0.1:$API_PORT)"
}

node_ready() {
    api GET /api/v1/nodes/localhost | python3 -c '
import json, sys
node = json.load(sys.stdin)
ready = [c for c in node["status"].get("conditions", []) if c["type"] == "Ready"]
sys.exit(0 if ready and ready[0]["status"] == "True" else 1)'
}

stop_pid() { # name: SIGTERM, then SIGKILL after 15 s
    local name=$1 pid i
    pid=$(pid_of "$name") || { rm -f "$STATE/pids/$name"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$STATE/pids/$name"
    log "stopped $name"
}

do_down() {
    [[ -d $STATE ]] || { log "nothing runs ($STATE does not exist)"; return 0; }
    # Delete every pod while kubelet still runs, so it tears their containers down itself.
    if pid_of kube-apiserver >/dev/null && pid_of kubelet >/dev/null && api GET /readyz >/dev/null 2>&1; then
        local ns
        for ns in $(api GET /api/v1/namespaces | python3 -c '
import json, sys
print(" ".join(i["metadata"]["name"] for i in json.load(sys.stdin)["items"]))'); do
            api DELETE "/api/v1/namespaces/$ns/pods?gracePeriodSeconds=0" >/dev/null 2>&1 || true
        done
        local i
        for ((i = 0; i < 120; i++)); do
            [[ -z $(ctr_ tasks ls -q 2>/dev/null) ]] && break
            sleep 0.25
        done
    fi
    local p
    for p in kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do stop_pid "$p"; done
    # What kubelet left: containers and sandboxes.
    if pid_of containerd >/dev/null; then
        local id
        for id in $(ctr_ tasks ls -q 2>/dev/null); do
            ctr_ tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
        done
        sleep 0.5
        for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$id" >/dev/null 2>&1 || true; done
        for id in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$id" >/dev/null 2>&1 || true; done
    fi
    stop_pid containerd
    # Shims of our containerd that outlived it (found by our socket path, killed by pid).
    local pid
    local cmdline
    for cmdline in /proc/[0-9]*/cmdline; do
        pid=${cmdline#/proc/}
        pid=${pid%/cmdline}
        { tr '\0' ' ' <"$cmdline"; } 2>/dev/null | grep -q "containerd-shim.* -address $CTR_SOCK" \
            && kill -KILL "$pid" 2>/dev/null || true
    done
    # Unmount what kubelet and containerd mounted under $STATE, deepest first.
    local mnt
    for mnt in $(awk -v s="$STATE/" 'index($5, s) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
        umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || log "could not unmount $mnt"
    done
    # Network namespaces of pods without hostNetwork that the runtime could not remove.
    if [[ -f $STATE/started-at ]]; then
        local netns
        for netns in /var/run/netns/cni-*; do
            [[ -e $netns && $netns -nt $STATE/started-at ]] || continue
            umount "$netns" 2>/dev/null || true
            rm -f "$netns"
        done
    fi
    # kubelet's pod cgroups (empty once their processes are gone).
    local cg
    for cg in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
        [[ -d $cg ]] && find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    log "down"
}

do_status() {
    local p
    for p in "${PROCS[@]}"; do
        if pid_of "$p" >/dev/null; then echo "$p: running (pid $(pid_of "$p"))"; else echo "$p: stopped"; fi
    done
}

do_import_image() { # tar
    [[ -f ${1:-} ]] || die "import-image needs an image tar (podman save --format docker-archive)"
    pid_of containerd >/dev/null || die "containerd does not run: cluster.sh up first"
    ctr_ images import --all-platforms "$1" >&2
}

case "${1:-}" in
build) do_build ;;
up) do_up ;;
down) do_down ;;
status) do_status ;;
import-image) do_import_image "${2:-}" ;;
images) ctr_ images ls -q ;;
*) echo "usage: $0 build|up|down|status|images|import-image TAR" >&2; exit 2 ;;
esac
