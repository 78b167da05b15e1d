#!/usr/bin/env bash
# Installs the Debian packages meterd's build needs (compiler, headers) and,
# unless called with --build, the meter rig's (mmdebstrap, QEMU: the suite boots
# the rig's guest), and, unless called with --build or --rig, those the test
# suite talks to (real peers: OpenSSH, rsyslog, promtool, ...). With ARCH=arm64
# (make rig ARCH=arm64), also the arm64 rig's (qemu-system-aarch64, qemu-user
# and its binfmt_misc entry). Each entry is "command:package"; only missing ones
# are installed, and only where apt-get can run as root.
set -euo pipefail
# Daemons such as rsyslogd live in sbin, which an unprivileged PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

build_only=false
[ "${1:-}" = "--build" ] && build_only=true
# --rig: the meter rig's tools (scripts/rig.sh), on top of the build's.
rig=true
$build_only && rig=false
[ "${1:-}" = "--rig" ] && build_only=true

needs=("cc:gcc")
$rig && needs+=(
    "mmdebstrap:mmdebstrap"
    "qemu-system-x86_64:qemu-system-x86"
    "qemu-img:qemu-utils"
    "mke2fs:e2fsprogs"
    "ssh:openssh-client"
    "sftp:openssh-client"
    "mbpoll:mbpoll"
)
$rig && [ "${ARCH:-x86_64}" = arm64 ] && needs+=(
    "qemu-system-aarch64:qemu-system-arm"
    "qemu-aarch64-static:qemu-user-static"
    "update-binfmts:binfmt-support"
)
$build_only || needs+=(
    "ssh:openssh-client"
    "sftp:openssh-client"
    "ssh-keygen:openssh-client"
    "rsyslogd:rsyslog"
    "promtool:prometheus"
    "systemd-analyze:systemd"
    "sshpass:sshpass"
    "picocom:picocom"
    "sshd:openssh-server"
    "mbpoll:mbpoll"
    "chromium:chromium"
    # The directory servers of the login tests: OpenLDAP, FreeRADIUS, a Samba AD domain controller.
    "slapd:slapd"
    "ldapadd:ldap-utils"
    "freeradius:freeradius"
    "samba:samba"
    "samba-tool:samba-common-bin"
    "ldbsearch:ldb-tools"
)

missing=()
for entry in "${needs[@]}"; do
    cmd=${entry%%:*}
    pkg=${entry##*:}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
# Python headers and venv support are packages, not commands.
python3 -c 'import sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' \
    || missing+=("python3-dev")
python3 -c 'import ensurepip' 2>/dev/null || missing+=("python3-venv")
# The C security-log sealer links OpenSSL's libcrypto and zlib.
[ -e /usr/include/openssl/evp.h ] || missing+=("libssl-dev")
[ -e /usr/include/zlib.h ] || missing+=("zlib1g-dev")
# rsyslog's TLS (RFC 5425) stream driver is a module, not a command.
$build_only || compgen -G "/usr/lib/*/rsyslog/lmnsd_gtls.so" >/dev/null || compgen -G "/usr/lib/rsyslog/lmnsd_gtls.so" >/dev/null \
    || missing+=("rsyslog-gnutls")
# A Samba AD DC needs packages that bring no command: the provisioning data, the
# directory's ldb modules (samba-ad-dc pulls in those and winbind).
$build_only || [ -e /usr/share/samba/setup/provision.ldif ] || missing+=("samba-ad-provision")
$build_only || compgen -G "/usr/lib/*/samba/ldb/acl.so" >/dev/null || missing+=("samba-ad-dc")

# mmdebstrap configures a foreign root file system's packages under qemu-user.
binfmt() {
    [ "${ARCH:-x86_64}" = arm64 ] && [ "$(uname -m)" != aarch64 ] && $rig || return 0
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && return 0
    [ "$(id -u)" -eq 0 ] || { echo "system-deps: no binfmt_misc entry for qemu-aarch64 (as root: update-binfmts --enable qemu-aarch64)" >&2; return 1; }
    [ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    update-binfmts --enable qemu-aarch64
}

if [ ${#missing[@]} -eq 0 ]; then
    binfmt
    exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: missing packages: ${missing[*]} (install them with apt-get as root)" >&2
    exit 1
fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The tests start their own directory servers in temporary directories; the system
# services these packages start (and enable) would only hold ports and run as root.
# Only services of packages installed just now are touched (entries are "service:package").
for entry in slapd:slapd freeradius:freeradius samba-ad-dc:samba-ad-dc smbd:samba nmbd:samba winbind:samba-ad-dc; do
    svc=${entry%%:*}
    case " ${missing[*]} " in
    *" ${entry##*:} "*) ;;
    *) continue ;;
    esac
    if [ -d /run/systemd/system ]; then
        systemctl disable --now "$svc" >/dev/null 2>&1 || true
    else
        # Without systemd as PID 1 the package started the service through its init
        # script, and enabled its unit all the same: both are undone, or the unit (with
        # warnings of its own) is pulled in wherever multi-user.target is loaded.
        [ -x "/etc/init.d/$svc" ] && invoke-rc.d "$svc" stop >/dev/null 2>&1
        command -v systemctl >/dev/null && systemctl disable "$svc" >/dev/null 2>&1
        update-rc.d "$svc" disable >/dev/null 2>&1 || true
    fi
done
binfmt
