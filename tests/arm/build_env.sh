#!/usr/bin/env bash
# An aarch64 environment for tests/test_arm.py, run under user-mode emulation (no binfmt):
#   qemu-aarch64-static -cpu CPU -L ARM/cpu/CPU ARM/root/usr/bin/python3.X ...
#
#   tests/arm/build_env.sh ARM_DIR WHEEL [HOST_PYTHON]
#
# ARM/root   Debian's arm64 CPython (the .debs of python3.X-minimal, libpython3.X-stdlib and
#            their libraries, unpacked with dpkg-deb -x: nothing is installed on this machine
#            and dpkg's architectures stay as they are), with the base package's dependencies
#            as PyPI's aarch64 wheels at the versions of requirements.lock in its
#            site-packages (usr/lib/python3/dist-packages), and WHEEL, refreshed on every run.
# ARM/cpu/*  one qemu -L root per emulated CPU: links to ARM/root and a /proc/cpuinfo that
#            describes that CPU. qemu-user passes the host's x86 /proc/cpuinfo through, which
#            makes onnxruntime's CPU detection crash; and the CPU it names must be the one
#            emulated: onnxruntime picks its int8 kernels from it (a Cortex-A76 there under
#            an emulated Cortex-A72, which lacks the dot-product instructions, ends in an
#            illegal instruction in the first int8 model run).
# ARM/env.json  what the test reads: the paths above, the package versions, any that differ
#            from the lock.
# Downloads (the apt lists, the .debs, the wheels) are cached under ARM_DIR; the root is
# rebuilt only when this script, requirements.lock or pyproject.toml change.
set -euo pipefail
ARM=${1:?usage: build_env.sh ARM_DIR WHEEL [HOST_PYTHON]}
WHEEL=${2:?usage: build_env.sh ARM_DIR WHEEL [HOST_PYTHON]}
HOST_PY=${3:-.venv/bin/python}
HERE=$(cd "$(dirname "$0")" && pwd)
CHECKOUT=$(cd "$HERE/../.." && pwd)
mkdir -p "$ARM"
ARM=$(cd "$ARM" && pwd)
ROOT=$ARM/root
SITE=$ROOT/usr/lib/python3/dist-packages
CPUS="cortex-a72 cortex-a76"

# 1. qemu-user-static from Debian, like the Makefile's node-tools
command -v qemu-aarch64-static >/dev/null || (apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >/dev/null)
QEMU=$(command -v qemu-aarch64-static)

# 2. a private apt for arm64 (its own lists and cache under ARM/apt, the system's sources)
APT=$ARM/apt
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$ARM/debs"
touch "$APT/status"
cat > "$APT/apt.conf" <<EOF
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
APT::Install-Recommends "false";
APT::Sandbox::User "root";
Dir::State::Lists "$APT/lists";
Dir::State::status "$APT/status";
Dir::Cache "$APT/cache";
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
export APT_CONFIG=$APT/apt.conf

KEY=$(cat "$0" "$CHECKOUT/requirements.lock" "$CHECKOUT/pyproject.toml" /etc/os-release \
	| sha256sum | cut -c1-16)
if [ "$(cat "$ROOT/.key" 2>/dev/null)" != "$KEY" ]; then
	echo "build_env: building the aarch64 root in $ROOT"
	ls "$APT"/lists/*_Packages* >/dev/null 2>&1 || apt-get update -qq
	# Debian's own Python 3 (3.11 on bookworm) and glibc, for the wheels' tags
	PYV=$(apt-cache depends python3-minimal | sed -n 's/.*Depends: python\(3\.[0-9]*\)-minimal.*/\1/p' \
		| head -1)
	GLIBC=$(apt-cache show libc6 | sed -n 's/^Version: \([0-9]*\.[0-9]*\).*/\1/p' | head -1)
	[ -n "$PYV" ] && [ -n "$GLIBC" ] || { echo "build_env: no arm64 python3/libc6 in apt" >&2; exit 1; }
	# 3. the .debs: python3.X and the libraries it and the wheels load (libstdc++ for
	# onnxruntime), without dpkg, perl and the like that only the maintainer scripts need
	PKGS=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
		--no-replaces --no-enhances "python$PYV-minimal" "libpython$PYV-stdlib" libstdc++6 \
		| grep -v '^[ <]' | sort -u \
		| grep -vxE 'dpkg|tar|install-info|perl.*|libperl.*|mailcap|mime-support|debconf.*')
	(cd "$ARM/debs" && rm -f ./*.deb && apt-get download -qq $PKGS)
	rm -rf "$ROOT" && mkdir -p "$ROOT"
	for deb in "$ARM"/debs/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done
	# 4. the dependencies as aarch64 wheels (manylinux up to this glibc), the lock's versions
	PLAT="--platform manylinux2014_aarch64"
	for minor in $(seq "${GLIBC#*.}" -1 17); do
		PLAT="$PLAT --platform manylinux_${GLIBC%%.*}_${minor}_aarch64"
	done
	TAGS="--only-binary=:all: $PLAT --python-version $PYV --implementation cp"
	mkdir -p "$ARM/wheels"
	if ! "$HOST_PY" -m pip download -qq $TAGS -d "$ARM/wheels" -c "$CHECKOUT/requirements.lock" \
			"$WHEEL"; then
		echo "build_env: not every locked version has an aarch64 wheel; taking the newest" >&2
		"$HOST_PY" -m pip download -qq $TAGS -d "$ARM/wheels" "$WHEEL"
		CONSTRAINT=
	else
		CONSTRAINT="-c $CHECKOUT/requirements.lock"
	fi
	# byte-compiled by the host only when it is the same Python minor version
	COMPILE=--no-compile
	[ "$("$HOST_PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" = "$PYV" ] \
		&& COMPILE=
	"$HOST_PY" -m pip install -qq --no-index --find-links "$ARM/wheels" $TAGS $COMPILE \
		--target "$SITE" $CONSTRAINT "$WHEEL" 2>&1 | grep -v "dependency resolver\|requires " \
		|| true
	test -d "$SITE/onnxruntime" || { echo "build_env: onnxruntime did not install" >&2; exit 1; }
	echo "$PYV" > "$ROOT/.python-version"
	echo "$KEY" > "$ROOT/.key"
fi
PYV=$(cat "$ROOT/.python-version")

# 5. the project's wheel, fresh on every run (pure Python)
"$HOST_PY" -m pip install -qq --no-deps --upgrade --target "$SITE" "$WHEEL" 2>&1 \
	| grep -v "dependency resolver\|requires " || true

# 6. one -L root per emulated CPU; MIDR and features as qemu's models of these cores
NCPU=$(getconf _NPROCESSORS_CONF)
for cpu in $CPUS; do
	dir=$ARM/cpu/$cpu
	mkdir -p "$dir/proc"
	for d in lib usr etc; do ln -sfn "../../root/$d" "$dir/$d"; done
	case $cpu in
	cortex-a72) features="fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"
		variant=0x0 part=0xd08 revision=3 ;;
	cortex-a76) features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid"
		features="$features asimdrdm lrcpc dcpop asimddp"
		variant=0x4 part=0xd0b revision=1 ;;
	esac
	for i in $(seq 0 $((NCPU - 1))); do
		printf 'processor\t: %d\nBogoMIPS\t: 50.00\nFeatures\t: %s\nCPU implementer\t: 0x41\n' \
			"$i" "$features"
		printf 'CPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' \
			"$variant" "$part" "$revision"
	done > "$dir/proc/cpuinfo"
done

# 7. env.json: paths, versions, and the packages whose version is not the lock's
"$HOST_PY" - "$ARM" "$PYV" "$QEMU" "$CPUS" "$CHECKOUT/requirements.lock" <<'EOF'
import json, re, sys
from pathlib import Path

arm, pyv, qemu, cpus, lock = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
site = arm / "root/usr/lib/python3/dist-packages"
installed = {}
for info in site.glob("*.dist-info"):
    name, _, version = info.name[: -len(".dist-info")].partition("-")
    installed[norm(name)] = version
pins = {}
for line in Path(lock).read_text().splitlines():
    name, sep, version = line.partition("==")
    if sep:
        pins[norm(name.strip())] = version.strip()
differs = {n: {"aarch64": v, "lock": pins[n]} for n, v in sorted(installed.items())
           if n in pins and pins[n] != v}
env = {"python": f"root/usr/bin/python{pyv}", "python_version": pyv, "qemu": qemu,
       "site_packages": str(site.relative_to(arm)),
       "cpus": {c: f"cpu/{c}" for c in cpus.split()},
       "packages": dict(sorted(installed.items())), "differs_from_lock": differs}
(arm / "env.json").write_text(json.dumps(env, indent=1))
print(f"build_env: aarch64 CPython {pyv}, {len(installed)} packages in {site}; "
      f"differ from the lock: {differs or 'none'}")
EOF
