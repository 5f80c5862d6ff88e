#!/usr/bin/env bash
# Builds (once) an arm64 Debian bookworm sysroot with the target's libc, libstdc++, libssl, openssl
# and python3, using the same Debian mirrors as this machine's apt sources. No binfmt needed: the
# "extract" variant only unpacks packages.
set -euo pipefail
source "$(dirname "$0")/env.sh"

packages=libc6-dev,libstdc++6,libssl-dev,openssl,python3,python3-venv,python3-dev,ca-certificates
# qemu-user shows the host's x86 /proc/cpuinfo to the guest, and onnxruntime crashes parsing it;
# qemu's -L prefix applies to /proc paths too, so an ARM cpuinfo here replaces it. It describes
# a Neoverse-N1 (the QEMU_CPU model) with as many cores as the host has. Rewritten on every run.
write_cpuinfo() {
  mkdir -p "$SYSROOT/proc"
  for ((i = 0; i < $(nproc); i++)); do
    cat <<CPU
processor	: $i
BogoMIPS	: 50.00
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x3
CPU part	: 0xd0c
CPU revision	: 1

CPU
  done >"$SYSROOT/proc/cpuinfo"
}

stamp=$SYSROOT/.edgeguard-sysroot
if [[ -f $stamp && $(cat "$stamp") == "$packages" ]]; then
  write_cpuinfo
  echo "sysroot: cached at $SYSROOT"
  exit 0
fi

# "deb URI SUITE COMPONENTS" lines from the host's sources (deb822 and one-line formats).
mirrors=$(python3 - <<'PY'
import glob, re
lines = []
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        f = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            k, v = line.split(":", 1)
            f[k.strip().lower()] = v.strip()
        if f.get("types") == "deb" and f.get("enabled", "yes") == "yes" and "debian" in f.get("uris", ""):
            for uri in f["uris"].split():
                for suite in f.get("suites", "").split():
                    lines.append(f"deb {uri} {suite} {f.get('components', 'main')}")
for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
    try:
        for line in open(path):
            if re.match(r"deb\s+(\[[^]]*\]\s+)?\S*debian", line):
                lines.append(re.sub(r"\[[^]]*\]\s+", "", line.strip()))
    except OSError:
        pass
# The sysroot needs bookworm itself plus its security updates; other suites are optional.
lines = [l for l in lines if " bookworm" in l]
print("\n".join(lines) or "deb http://deb.debian.org/debian bookworm main\n"
      "deb http://deb.debian.org/debian-security bookworm-security main")
PY
)
echo "sysroot: building in $SYSROOT from:"
sed 's/^/  /' <<<"$mirrors"
rm -rf "$SYSROOT"
mapfile -t mirror_args <<<"$mirrors"
mmdebstrap --quiet --mode=root --arch=arm64 --variant=extract --include="$packages" \
  bookworm "$SYSROOT" "${mirror_args[@]}"

write_cpuinfo
echo "$packages" >"$stamp"
echo "sysroot: done ($(du -sh "$SYSROOT" | cut -f1))"
