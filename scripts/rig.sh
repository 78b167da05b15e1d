#!/usr/bin/env bash
# The meter rig: a Debian bookworm guest with meterd installed by the README's
# "Running under systemd" steps, booted in QEMU.
#
#   scripts/rig.sh build   base image (once) and the meterd layer (when meterd changed)
#   scripts/rig.sh boot    build, then boot a throwaway overlay and wait for meterd
#   scripts/rig.sh stop    power the booted guest off (bounded, then kill)
#   scripts/rig.sh kill    kill QEMU outright (a power cut)
#   scripts/rig.sh powercycle   a power cut, then a boot of the same disk
#   scripts/rig.sh exec CMD...   run a command in the guest as root (QEMU guest agent)
#
# ARCH=x86_64 (default, images in build/rig) or ARCH=arm64 (build/rig-arm64): the same
# guest for aarch64 (qemu-system-aarch64 -M virt, cortex-a53, always TCG), its root file
# system's packages configured under qemu-user (binfmt_misc), meterd's C parts built from
# its source distribution inside the guest by the README's pip step.
#
# Layers, each cached under $RIG_DIR and rebuilt only when its inputs change:
#   base-<hash>.qcow2    mmdebstrap of Debian packages only (hash of the package list
#                        and of this script's base recipe)
#   meterd-<hash>.qcow2  overlay on the base: the README's install steps run in the
#                        booted guest from a provisioning disk (hash of the sources,
#                        the unit, the rig configuration and the README's steps)
#   run/disk.qcow2       overlay on the meterd layer, thrown away on every boot
#
# The guest's ttyS0 is its console, logged to run/console.log; ttyS1 is the meter's
# serial console, a Unix socket run/ttyS1.sock; the guest agent listens on
# run/qga.sock; SSH (22), Modbus (502) and Modbus/TCP Security (802) are forwarded
# from 127.0.0.1 only. Every wait is bounded; a failure prints one line naming the
# step and its log file.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ARCH=${ARCH:-x86_64}
case "$ARCH" in
    x86_64 | amd64) ARCH=x86_64; default_dir=$here/build/rig ;;
    arm64 | aarch64) ARCH=arm64; default_dir=$here/build/rig-arm64 ;;
    *) echo "rig: ARCH=$ARCH: x86_64 or arm64" >&2; exit 1 ;;
esac
RIG_DIR=${RIG_DIR:-$default_dir}
RIG_MIRROR=${RIG_MIRROR:-http://deb.debian.org/debian}
RIG_SECURITY_MIRROR=${RIG_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
RIG_SSH_PORT=${RIG_SSH_PORT:-10022}
RIG_MODBUS_PORT=${RIG_MODBUS_PORT:-10502}
RIG_MODBUS_TLS_PORT=${RIG_MODBUS_TLS_PORT:-10802}
RIG_MEMORY=${RIG_MEMORY:-1024}
RIG_CPUS=${RIG_CPUS:-2}
# Emulating another architecture (TCG, cortex-a53) is several times slower: so are its bounds.
slow=1; [ "$ARCH" = arm64 ] && slow=4
BUILD_LOCK_TIMEOUT=$((1200 * slow))
RIG_BOOT_TIMEOUT=${RIG_BOOT_TIMEOUT:-$((420 * slow))}
RIG_BUILD_TIMEOUT=${RIG_BUILD_TIMEOUT:-$((2400 * slow))}
RIG_INSTALL_TIMEOUT=${RIG_INSTALL_TIMEOUT:-$((900 * slow))}
PYTHON=${PYTHON:-python3}
# pip wheel runs with the checkout's virtual environment (make rig creates it).
RIG_PIP_PYTHON=${RIG_PIP_PYTHON:-$here/.venv/bin/python}
run_dir=${RIG_RUN_DIR:-$RIG_DIR/run}
log_dir=$RIG_DIR/logs
qga() { "$PYTHON" "$here/scripts/rig_qga.py" "$run_dir/qga.sock" "$@"; }

# Guest packages: the kernel, systemd as PID 1, networking by systemd-networkd, the
# guest agent (the rig's own way in: meterd is the guest's SSH server), Python for
# meterd, OpenSSH's client for the guest's own checks.
packages=(
    initramfs-tools systemd systemd-sysv udev dbus kmod
    iproute2 procps e2fsprogs mount util-linux
    qemu-guest-agent python3 python3-venv openssh-client
)
if [ "$ARCH" = x86_64 ]; then
    packages+=(linux-image-amd64)
    debian_arch=amd64
    qemu=qemu-system-x86_64
    console=ttyS0
else
    # meterd's C parts are compiled in the guest (the host cannot build aarch64 wheels).
    packages+=(linux-image-arm64 gcc libc6-dev python3-dev libssl-dev zlib1g-dev)
    debian_arch=arm64
    qemu=qemu-system-aarch64
    # virt's one PL011 UART is the console; the meter's ttyS0/ttyS1 are a PCI 16550 pair.
    console=ttyAMA0
fi

die() { echo "rig: $*" >&2; exit 1; }
# step NAME CMD...: runs CMD with its output in logs/NAME.log; on failure, one line.
step() {
    local name=$1; shift
    mkdir -p "$log_dir"
    local log=$log_dir/$name.log
    local start=$SECONDS
    echo "rig: $name ..." >&2
    # A subshell outside any condition, so that set -e stops the step at its first failure.
    local rc=0
    set +e
    ( set -e; "$@" ) >"$log" 2>&1
    rc=$?
    set -e
    if [ "$rc" -ne 0 ]; then
        [ -s "$run_dir/console.log" ] && log="$log (guest console: $run_dir/console.log)"
        die "step '$name' failed; see $log"
    fi
    echo "rig: $name done in $((SECONDS - start)) s" >&2
}

check_tools() {
    local t
    for t in mmdebstrap "$qemu" qemu-img mke2fs "$PYTHON"; do
        command -v "$t" >/dev/null 2>&1 || die "missing $t (scripts/system-deps.sh --rig ARCH=$ARCH installs it)"
    done
    if [ "$ARCH" = arm64 ] && [ "$(uname -m)" != aarch64 ]; then
        # mmdebstrap runs the arm64 packages' maintainer scripts under qemu-user.
        [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] \
            || die "no binfmt_misc entry for qemu-aarch64 (apt-get install qemu-user-static binfmt-support; mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc)"
    fi
}

base_hash() {
    { printf '%s\n' "${packages[@]}" "$RIG_MIRROR" "$ARCH"; sed -n '/^build_base_image()/,/^}/p' "$0"; } \
        | sha256sum | cut -c1-16
}

# Unmounts whatever is still mounted below $1 (deepest first): mmdebstrap, killed or
# failing, can leave the chroot's /sys or /proc mounted, and neither rm -rf nor mke2fs -d
# may walk into those.
unmount_below() {
    local dir m
    dir=$(realpath -m "$1")
    awk -v d="$dir/" 'index($2 "/", d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m"
    done
}

build_base_image() {
    local out=$1 work=$RIG_DIR/work/base
    unmount_below "$work"
    rm -rf --one-file-system "$work"; mkdir -p "$work"
    local IFS=,
    timeout "$RIG_BUILD_TIMEOUT" mmdebstrap --variant=minbase --architectures="$debian_arch" --include="${packages[*]}" \
        --customize-hook='echo meter > "$1/etc/hostname"' \
        --customize-hook='echo "/dev/vda / ext4 defaults 0 1" > "$1/etc/fstab"' \
        --customize-hook='printf "[Match]\nName=en*\n\n[Network]\nDHCP=yes\n" > "$1/etc/systemd/network/10-rig.network"' \
        --customize-hook='chroot "$1" systemctl enable systemd-networkd' \
        --customize-hook='chroot "$1" useradd --system --user-group --no-create-home --shell /usr/sbin/nologin panel' \
        --customize-hook='mkdir -p "$1/mnt/provision"' \
        bookworm "$work/root" \
        "deb $RIG_MIRROR bookworm main" "deb $RIG_MIRROR bookworm-updates main" \
        "deb $RIG_SECURITY_MIRROR bookworm-security main"
    unset IFS
    unmount_below "$work/root"
    cp -L "$work/root/vmlinuz" "$out.vmlinuz"
    cp -L "$work/root/initrd.img" "$out.initrd"
    mke2fs -q -t ext4 -L meter -d "$work/root" "$work/root.img" 3G
    qemu-img convert -f raw -O qcow2 "$work/root.img" "$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf --one-file-system "$work"
}

# The accelerator: KVM only when it is usable and, measured, faster than TCG (on some
# hosts /dev/kvm opens but runs far slower). The measure: the guest kernel booting
# without a root file system until it panics (-no-reboot ends QEMU there).
kernel_panic_seconds() {
    local accel=$1 kernel=$2 limit=$3 start end
    # The CPU model the rig's boots use with this accelerator.
    local cpu=max; [ "$accel" = kvm ] && cpu=host
    start=$(date +%s.%N)
    timeout "$limit" qemu-system-x86_64 -accel "$accel" -cpu "$cpu" -m 512 -smp 1 -display none -nodefaults \
        -no-reboot -serial null -kernel "$kernel" -append "console=ttyS0 panic=-1 quiet" >/dev/null 2>&1 || return 1
    end=$(date +%s.%N)
    "$PYTHON" -c "print(round($end - $start, 2))"
}

choose_accel() {
    local kernel=$1 cache=$RIG_DIR/accel
    if [ -f "$cache" ]; then cat "$cache"; return; fi
    local kvm=none tcg limit
    tcg=$(kernel_panic_seconds tcg "$kernel" 300) || tcg=none
    # KVM gets twice TCG's time: slower than that, it is not worth having.
    limit=$("$PYTHON" -c "print(int(2 * float('$tcg')) + 5 if '$tcg' != 'none' else 300)")
    if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
        kvm=$(kernel_panic_seconds kvm "$kernel" "$limit") || kvm=none
    fi
    echo "kernel boot to panic: tcg $tcg s, kvm $kvm s (limit $limit s)" >"$log_dir/accel.log"
    local accel=tcg
    if [ "$kvm" != none ] && { [ "$tcg" = none ] || "$PYTHON" -c "import sys; sys.exit(0 if $kvm < $tcg else 1)"; }; then
        accel=kvm
    fi
    if [ "$accel" = tcg ] && [ "$tcg" = none ]; then return 1; fi
    echo "$accel" >"$cache"
    echo "$accel"
}

# The checkout's tests of meterd's C parts (the evaluator's table and decisions, the
# sealer against the Python codec), run in the guest against the installed package.
# The compiler's differential test is left to the host: 2500 examples, minutes under TCG.
native_tests=(
    tests/policy/table_specs.py tests/policy/test_table.py tests/policy/test_evaluator.py
    tests/seclog/__init__.py tests/seclog/conftest.py tests/seclog/test_sealer.py
)

meterd_hash() {
    (
        cd "$here"
        find meterd native setup.py pyproject.toml MANIFEST.in systemd config/rig config/policy.toml \
            "${native_tests[@]}" \
            -type f ! -name '*.so' ! -name '*.o' ! -name '*.pyc' ! -path '*/__pycache__/*' \
            ! -name '_evaluator.c' ! -name '_seal.c' -print0 | sort -z | xargs -0 sha256sum
        readme_install_block
        sed -n '/^source_dist()/,/^}/p; /^provision_dir()/,/^}/p; /^install_meterd()/,/^}/p; /^arm64_wheels()/,/^}/p' "$0"
        echo "$1"
    ) | sha256sum | cut -c1-16
}

# The README's install block, as written: the first ```sh block after "Install:" in
# the "Running under systemd" section.
readme_install_block() {
    awk '/^## Running under systemd/{s=1} s&&/^Install:/{i=1} i&&/^```sh/{b=1; next} b&&/^```/{exit} b' \
        "$here/README.md"
}

# meterd's source distribution, from the checkout's files only (a wheel built in the
# checkout itself would have setuptools walk build/, where the rig's root file systems are).
source_dist() {
    local dir=$1 version
    version=$("$RIG_PIP_PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
    mkdir -p "$dir"
    tar czf "$dir/meterd-$version.tar.gz" --transform "s,^,meterd-$version/," \
        --exclude='*.so' --exclude=__pycache__ --exclude='*.pyc' --exclude=_evaluator.c --exclude=_seal.c \
        pyproject.toml setup.py MANIFEST.in README.md meterd native
}

# Wheels for the arm64 guest, made on this host: meterd as a source distribution (its C
# parts are compiled in the guest when the README's pip step installs it) and every other
# package as published aarch64 or pure-Python wheels for the guest's Python 3.11.
arm64_wheels() {
    local dir=$1
    local requires
    mapfile -t requires < <("$RIG_PIP_PYTHON" -c '
import tomllib
doc = tomllib.load(open("pyproject.toml", "rb"))
print("\n".join(doc["project"]["dependencies"] + doc["build-system"]["requires"]))')
    "$RIG_PIP_PYTHON" -m pip download --quiet --dest "$dir" --only-binary=:all: \
        --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 --platform manylinux_2_34_aarch64 \
        --python-version 3.11 --implementation cp "${requires[@]}"
    source_dist "$dir"
}

provision_dir() {
    local dir=$1
    rm -rf "$dir"; mkdir -p "$dir/systemd"
    if [ "$ARCH" = x86_64 ]; then
        # The README's `pip wheel`, on the source distribution of the checkout.
        (cd "$here" && source_dist "$dir.sdist")
        "$RIG_PIP_PYTHON" -m pip wheel --quiet --wheel-dir "$dir/wheels" "$dir.sdist"/meterd-*.tar.gz
        rm -rf "$dir.sdist"
    else
        (cd "$here" && arm64_wheels "$dir/wheels")
    fi
    cp "$here/config/rig/meterd.toml" "$dir/meterd.toml"
    cp "$here/config/policy.toml" "$dir/policy.toml"
    cp "$here/systemd/meterd.service" "$dir/systemd/meterd.service"
    readme_install_block >"$dir/install.sh"
    [ -s "$dir/install.sh" ] || { echo "no install block in README.md"; return 1; }
    # The native tests and their runner's wheels (pure Python), for tests/rig/test_native.py.
    mkdir -p "$dir/native-tests"
    (cd "$here" && cp --parents pyproject.toml "${native_tests[@]}" "$dir/native-tests/")
    "$RIG_PIP_PYTHON" -m pip download --quiet --dest "$dir/native-tests/wheels" --only-binary=:all: \
        --platform any --python-version 3.11 --implementation py pytest hypothesis
}

qemu_start() {
    local disk=$1 base=$2 accel=$3; shift 3
    mkdir -p "$run_dir"
    rm -f "$run_dir"/{qga,ttyS1,monitor}.sock "$run_dir/qemu.pid"
    local machine
    if [ "$ARCH" = x86_64 ]; then
        local cpu=max; [ "$accel" = kvm ] && cpu=host
        machine=(-accel "$accel" -cpu "$cpu"
            -chardev "file,id=con0,path=$run_dir/console.log" -serial chardev:con0
            -chardev "socket,id=uart1,path=$run_dir/ttyS1.sock,server=on,wait=off" -serial chardev:uart1)
    else
        machine=(-M virt -accel tcg,thread=multi -cpu cortex-a53
            -chardev "file,id=con0,path=$run_dir/console.log" -serial chardev:con0
            -chardev null,id=uart0
            -chardev "socket,id=uart1,path=$run_dir/ttyS1.sock,server=on,wait=off"
            -device pci-serial-2x,chardev1=uart0,chardev2=uart1)
    fi
    # A boot's disk honours the guest's flushes, so a power cut loses nothing it synced;
    # the install layer, finished by a clean power-off, may skip them.
    local cache=${RIG_DISK_CACHE:-writeback}
    "$qemu" "${machine[@]}" -m "$RIG_MEMORY" -smp "$RIG_CPUS" \
        -display none -nodefaults -daemonize -pidfile "$run_dir/qemu.pid" \
        -kernel "$base.vmlinuz" -initrd "$base.initrd" \
        -append "root=/dev/vda rw console=$console net.ifnames=1 systemd.show_status=1" \
        -drive "file=$disk,if=virtio,format=qcow2,cache=$cache" \
        -chardev "socket,id=qga0,path=$run_dir/qga.sock,server=on,wait=off" \
        -device virtio-serial -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0 \
        -monitor "unix:$run_dir/monitor.sock,server=on,wait=off" \
        -netdev "user,id=net0,restrict=off,hostfwd=tcp:127.0.0.1:$RIG_SSH_PORT-:22,hostfwd=tcp:127.0.0.1:$RIG_MODBUS_PORT-:502,hostfwd=tcp:127.0.0.1:$RIG_MODBUS_TLS_PORT-:802" \
        -device virtio-net-pci,netdev=net0 \
        -object rng-random,id=rng0,filename=/dev/urandom -device virtio-rng-pci,rng=rng0 \
        "$@" 9>&-  # a guest outliving its build must not hold the build lock
}

qemu_pid() { [ -f "$run_dir/qemu.pid" ] && cat "$run_dir/qemu.pid"; }

# Alive and not a zombie (a daemonized QEMU's parent is PID 1, which may reap it late).
qemu_alive() {
    local state
    state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

qemu_running() { local pid; pid=$(qemu_pid) && qemu_alive "$pid"; }

# A power cut: QEMU killed outright.
qemu_kill() {
    local pid
    pid=$(qemu_pid) || return 0
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$run_dir/qemu.pid"
}

wait_agent() {
    qga ping --timeout "$RIG_BOOT_TIMEOUT"
}

# Power off through the guest; QEMU gone within the bound, or killed.
qemu_poweroff() {
    local pid; pid=$(qemu_pid) || return 0
    qga exec --timeout 10 -- systemctl poweroff --no-block >/dev/null 2>&1 || true
    local i
    for i in $(seq 1 120); do
        qemu_alive "$pid" || { rm -f "$run_dir/qemu.pid"; return 0; }
        sleep 1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$run_dir/qemu.pid"
    return 1
}

install_meterd() {
    local base=$1 out=$2 accel=$3 work=$RIG_DIR/work/provision
    provision_dir "$work/dir"
    mke2fs -q -t ext4 -L provision -d "$work/dir" "$work/provision.img" 512M
    qemu-img create -q -f qcow2 -b "$(basename "$base")" -F qcow2 "$out.tmp"
    trap qemu_kill EXIT
    RIG_DISK_CACHE=unsafe qemu_start "$out.tmp" "$base" "$accel" -drive "file=$work/provision.img,if=virtio,format=raw,readonly=on"
    wait_agent
    qga exec --timeout 60 -- mount -o ro /dev/vdb /mnt/provision
    # Not also tee'd to the guest's console: getty's hangup of ttyS0 makes such writes fail.
    qga exec --timeout "$RIG_INSTALL_TIMEOUT" -- bash -c 'cd /mnt/provision && bash -ex install.sh'
    qga exec --timeout 30 -- systemctl is-active meterd
    # The native tests beside the install (not part of it): /root/native-tests, their
    # runner in /root/native-tests/lib.
    qga exec --timeout 60 -- cp -r /mnt/provision/native-tests /root/native-tests
    qga exec --timeout 600 -- /opt/meterd/bin/pip install --quiet --no-index \
        --find-links /root/native-tests/wheels --target /root/native-tests/lib pytest hypothesis
    qga exec --timeout 30 -- umount /mnt/provision
    qemu_poweroff
    mv "$out.tmp" "$out"
    rm -rf "$work"
}

build() {
    check_tools
    mkdir -p "$RIG_DIR" "$log_dir"
    # One build at a time per image directory: a build started early (make test's
    # prebuild) and the tests' own build share the cached layers, the later one waits.
    exec 9>"$RIG_DIR/build.lock"
    flock -w "$BUILD_LOCK_TIMEOUT" 9 || die "another build of $RIG_DIR held its lock for ${BUILD_LOCK_TIMEOUT}s; see $log_dir/"
    local base; base=$RIG_DIR/base-$(base_hash).qcow2
    if [ ! -f "$base" ]; then
        step base-image build_base_image "$base"
    fi
    local accel=tcg
    if [ "$ARCH" = x86_64 ]; then
        accel=$(choose_accel "$base.vmlinuz") || die "no usable QEMU accelerator; see $log_dir/accel.log"
    fi
    local layer; layer=$RIG_DIR/meterd-$(meterd_hash "$base").qcow2
    if [ ! -f "$layer" ]; then
        ! qemu_running || die "a rig guest is running (scripts/rig.sh stop first)"
        step meterd-install install_meterd "$base" "$layer" "$accel"
    fi
    echo "$base" >"$RIG_DIR/current-base"
    echo "$layer" >"$RIG_DIR/current-layer"
    echo "$accel" >"$RIG_DIR/current-accel"
    exec 9>&-
}

wait_meterd() {
    wait_agent
    # is-active only says "active" after READY=1 (Type=notify); bounded by the unit's
    # TimeoutStartSec, then by ours.
    local i
    for i in $(seq 1 $((120 * slow))); do
        if qga exec --timeout 10 -- systemctl is-active --quiet meterd 2>/dev/null; then
            return 0
        fi
        sleep 1
    done
    return 1
}

boot() {
    build
    ! qemu_running || die "a rig guest is already running (scripts/rig.sh stop)"
    local base layer accel
    base=$(cat "$RIG_DIR/current-base"); layer=$(cat "$RIG_DIR/current-layer"); accel=$(cat "$RIG_DIR/current-accel")
    mkdir -p "$run_dir"
    rm -f "$run_dir/disk.qcow2" "$run_dir/console.log"
    qemu-img create -q -f qcow2 -b "$layer" -F qcow2 "$run_dir/disk.qcow2"
    step boot-qemu qemu_start "$run_dir/disk.qcow2" "$base" "$accel"
    ( step boot-meterd wait_meterd ) || { qemu_kill; exit 1; }
    cat <<EOF
rig: booted ($accel); console log $run_dir/console.log
  ssh -p $RIG_SSH_PORT <user>@127.0.0.1     (credentials: scripts/rig.sh exec cat /var/lib/meterd/demo-credentials.txt)
  mbpoll -m tcp -p $RIG_MODBUS_PORT -a 1 -0 -1 -r 0 -c 10 127.0.0.1
  serial console: $run_dir/ttyS1.sock      modbus/TLS: 127.0.0.1:$RIG_MODBUS_TLS_PORT
  scripts/rig.sh stop
EOF
}

# A power cut under whatever runs, then a boot of the same disk (what a meter sees).
powercycle() {
    qemu_running || die "no rig guest is running"
    qemu_kill
    local base accel
    base=$(cat "$RIG_DIR/current-base"); accel=$(cat "$RIG_DIR/current-accel")
    cp "$run_dir/console.log" "$run_dir/console-before-cut.log" 2>/dev/null || true
    step powercycle-qemu qemu_start "$run_dir/disk.qcow2" "$base" "$accel"
    ( step powercycle-meterd wait_meterd ) || { qemu_kill; exit 1; }
}

# The build in the background, its output in logs/prebuild.log: make test starts it
# before lint and the benchmarks, whose time it then overlaps; the tests' own build
# waits on the lock and finds the layers cached (or fails with the same one line).
prebuild() {
    mkdir -p "$log_dir"
    setsid bash "$0" build >"$log_dir/prebuild.log" 2>&1 </dev/null &
    echo "rig: building the guest in the background (log: $log_dir/prebuild.log)" >&2
}

main() {
    case "${1:-boot}" in
        build) build ;;
        prebuild) prebuild ;;
        boot) boot ;;
        stop) qemu_poweroff ;;
        kill) qemu_kill ;;
        powercycle) powercycle ;;
        exec) shift; qga exec --timeout "${RIG_EXEC_TIMEOUT:-120}" -- "$@" ;;
        *) die "usage: scripts/rig.sh [build|boot|stop|kill|exec CMD...]" ;;
    esac
}

# One line read whole before it runs: editing this file while a build runs cannot change its course.
main "$@"; exit $?
