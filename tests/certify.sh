#!/usr/bin/env bash
# accord certify: the guest test kernels and the OS-level checks (the stock
# Debian guest of make certify-image) on accord:emu and QEMU TCG side by
# side, and the reports it writes. Checks that the run completes (status 0),
# that report.json, junit.xml and report.html are well-formed and hold both
# targets and every test the kernels print (each family on the machine
# guest/families gives it), that the known deviations of guest/known-deviations
# are FAILs with their note (QEMU's exception.pf_reserved_bit, its MSR #GPs)
# and that accord:emu fails nothing else, that an entry's conditions (kvm=,
# irqchip=) narrow it to the machines they name, that accord:kvm's timers
# FAILs are all listed for this host's KVM, that the OS-level rows pass, that
# a target that cannot run is "unavailable" and not failed, and - with a
# stand-in for QEMU that prints hostile text, hangs, crashes, ends early or
# reports a machine that is not the one configured - that guest text is
# escaped, broken runs are errors and wrong OS-level values are FAILs.
set -uo pipefail
cd "$(dirname "$0")/.."
. tests/lib/guest-tap.bash

ACCORD=${ACCORD:-build/accord}
QEMU=qemu-system-x86_64
test_tmp

if [ ! -x "$ACCORD" ]; then
	tap_not_ok "certify" "$ACCORD is missing (make all)"
	tap_summary
	exit 1
fi
have_python=1
command -v python3 >/dev/null || have_python=0
have_qemu=1
command -v "$QEMU" >/dev/null || have_qemu=0

# check NAME COMMAND...: ok when COMMAND succeeds, else not ok with its output
check() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		tap_ok "$name"
	else
		tap_not_ok "$name" "$(printf '%s' "$out" | head -n 20 | tr '\n' ' ')"
	fi
}

# pycheck NAME SCRIPT ARGS...: a python3 check; skipped without python3
pycheck() {
	local name=$1
	shift
	if [ "$have_python" -eq 0 ]; then
		tap_skip "$name" "python3 is not installed"
		return
	fi
	check "$name" python3 -c "$@"
}

# ---- the real run: accord:emu and qemu:tcg ----
OS_IMG=build/certify-image
make --no-print-directory certify-image >"$tmp/mkguest.log" 2>&1
have_os=1
[ -f "$OS_IMG/vmlinuz" ] && [ -f "$OS_IMG/initrd.cpio.gz" ] || have_os=0
out=$tmp/real
"$ACCORD" certify --target accord:emu --target qemu:tcg --kernels build/guest --out "$out" --timeout 300 \
	--os-image "$OS_IMG" >"$tmp/real.stdout" 2>"$tmp/real.stderr"
rc=$?
sed 's/^/# /' "$tmp/real.stdout"
if [ "$rc" -eq 0 ]; then
	tap_ok "certify: exit status 0"
else
	tap_not_ok "certify: exit status 0" "status $rc: $(head -n 5 "$tmp/real.stderr")"
fi
check "certify: one progress line per kernel and target" \
	grep -qE '^\[accord:emu\] smoke\.multiboot: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped \([0-9.]+ s\)' \
	"$tmp/real.stdout"
for f in report.json junit.xml report.html; do
	check "certify: $f written" test -s "$out/$f"
done
pycheck "report.json: parses" 'import json, sys; json.load(open(sys.argv[1]))' "$out/report.json"

pycheck "report.json: both targets, with availability" '
import json, sys
d = json.load(open(sys.argv[1])); have_qemu = sys.argv[2] == "1"
t = {x["name"]: x for x in d["targets"]}
assert list(t) == ["accord:emu", "qemu:tcg"], list(t)
assert t["accord:emu"]["available"] is True
assert t["accord:emu"]["errors"] == 0, t["accord:emu"]
assert t["qemu:tcg"]["available"] is have_qemu, t["qemu:tcg"]
' "$out/report.json" "$have_qemu"

pycheck "report.json: accord:emu runs with kvm=none irqchip=user (what known deviations are matched against)" '
import json, sys
d = json.load(open(sys.argv[1]))
t = [x for x in d["targets"] if x["name"] == "accord:emu"][0]
assert t["machine"] == "kvm=none irqchip=user", t
' "$out/report.json"

# accord fails nothing but what guest/known-deviations lists for it
pycheck "report.json: accord:emu FAILs only its listed known deviations" '
import json, sys
d = json.load(open(sys.argv[1]))
bad = [t["id"] for t in d["tests"] if t["results"]["accord:emu"]["verdict"] not in ("pass", "skip")
       and not (t["results"]["accord:emu"]["verdict"] == "fail" and "accord" in (t["note"] or ""))]
assert not bad, bad
' "$out/report.json"

# the new families are rows, run on the machine guest/families asks for
pycheck "report.json: msr, smp and pci rows pass on accord:emu (smp with 4 vCPUs, pci with a disk)" '
import json, sys
d = json.load(open(sys.argv[1]))
r = {t["id"]: t["results"] for t in d["tests"]}
for p in ("multiboot", "pvh"):
    for name in ("msr.%s/pat.reset_value", "msr.%s/absent.rdmsr_gp", "msr.%s/cpl3.rdmsr_gp",
                 "smp.%s/madt.cpu_count", "smp.%s/ap.started", "smp.%s/ipi.ap_to_bsp",
                 "smp.%s/lock_xadd.total", "smp.%s/init.then_sipi_restarts",
                 "pci.%s/ecam.agrees_with_conf1", "pci.%s/bar.size_power_of_two",
                 "pci.%s/msix.table_in_bar", "pci.%s/virtio.blk_capacity"):
        assert r[name % p]["accord:emu"]["verdict"] == "pass", (name % p, r.get(name % p))
' "$out/report.json"

if [ "$have_os" -eq 1 ]; then
	pycheck "report.json: the OS-level rows pass on accord:emu and qemu:tcg" '
import json, sys
d = json.load(open(sys.argv[1])); have_qemu = sys.argv[2] == "1"
rows = {t["name"]: t["results"] for t in d["tests"] if t["kernel"] == "os.linux"}
want = {"(run)", "boot.kernel_release", "cpus.nproc", "cpus.cpuinfo", "memory.memtotal",
        "clocksource.current", "clocksource.available", "disk.vda_present", "disk.vda_size",
        "modules.loaded"}
assert set(rows) == want, sorted(rows)
for name, res in rows.items():
    for target in (["accord:emu", "qemu:tcg"] if have_qemu else ["accord:emu"]):
        assert res[target]["verdict"] == "pass", (name, target, res[target])
assert "2 vCPUs" in rows["cpus.nproc"]["accord:emu"]["detail"], rows["cpus.nproc"]
' "$out/report.json" "$have_qemu"
else
	tap_skip "report.json: the OS-level rows" "no certify image: $(tail -n 1 "$tmp/mkguest.log")"
fi

# the test names straight from the kernels, run by accord itself
names=$tmp/names
: >"$names"
for image in build/guest/*.elf; do
	[ -e "$image" ] || continue
	label=${image##*/}
	case "$label" in
	*.pvh.elf) label=${label%.pvh.elf}.pvh ;;
	*) label=${label%.elf}.multiboot ;;
	esac
	family=${label%.*}
	guest_vmm_args accord "$family" "$tmp"
	timeout 300 "$ACCORD" run --kernel "$image" --debug-exit --accel emu "${GUEST_ARGS[@]}" </dev/null 2>/dev/null |
		tr -d '\r' | sed -nE "s/^(PASS|FAIL|SKIP) ([^:]*).*/$label\/\2/p" >>"$names"
done
check "guest kernels print test names" test -s "$names"
pycheck "report.json: every test the kernels print" '
import json, sys
d = json.load(open(sys.argv[1]))
ids = {t["id"] for t in d["tests"]}
want = {l.strip() for l in open(sys.argv[2]) if l.strip()}
missing = sorted(want - ids)
assert not missing, "missing: %s" % missing[:10]
for t in d["tests"]:
    assert set(t["results"]) == {"accord:emu", "qemu:tcg"}, t
' "$out/report.json" "$names"

if [ "$have_qemu" -eq 1 ]; then
	pycheck "report.json: exception.pf_reserved_bit FAILs on qemu:tcg, PASSes on accord:emu" '
import json, sys
d = json.load(open(sys.argv[1]))
rows = [t for t in d["tests"] if t["name"] == "exception.pf_reserved_bit"]
assert len(rows) == 2, [t["id"] for t in rows]   # Multiboot and PVH
for t in rows:
    r = t["results"]
    assert r["qemu:tcg"]["verdict"] == "fail", r
    assert r["accord:emu"]["verdict"] == "pass", r
    assert r["qemu:tcg"]["detail"], r
    assert "QEMU" in (t["note"] or ""), t
q = [x for x in d["targets"] if x["name"] == "qemu:tcg"][0]
assert q["verdict"] == "not certified" and q["failed"] >= 2, q
' "$out/report.json"
	pycheck "report.json: the MSR deviations of QEMU TCG (guest/known-deviations) are FAILs with a note" '
import json, sys
d = json.load(open(sys.argv[1]))
rows = [t for t in d["tests"] if t["name"] == "absent.rdmsr_gp"]
assert len(rows) == 2, [t["id"] for t in rows]
for t in rows:
    assert t["results"]["qemu:tcg"]["verdict"] == "fail", t
    assert t["results"]["accord:emu"]["verdict"] == "pass", t
    assert "QEMU TCG" in (t["note"] or "") and "SDM" in t["note"], t
' "$out/report.json"
else
	tap_skip "report.json: exception.pf_reserved_bit on qemu:tcg" "$QEMU is not installed"
	tap_skip "report.json: the MSR deviations of QEMU TCG" "$QEMU is not installed"
fi

pycheck "junit.xml: well-formed, one testsuite per target" '
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
s = [x.get("name") for x in r.iter("testsuite")]
assert s == ["accord:emu", "qemu:tcg"], s
if sys.argv[2] == "1":
    f = [c.get("name") for x in r.iter("testsuite") if x.get("name") == "qemu:tcg"
         for c in x.iter("testcase") if c.find("failure") is not None]
    assert "exception.pf_reserved_bit" in f, f
' "$out/junit.xml" "$have_qemu"

check "report.html: names both targets" \
	bash -c 'grep -q "accord:emu" "$1" && grep -q "qemu:tcg" "$1"' _ "$out/report.html"
check "report.html: self-contained (no external resources, no script)" \
	bash -c 'test -s "$1" && ! grep -qiE "<script|<link|src=|url\(|https?://" "$1"' _ "$out/report.html"

# ---- a target that cannot run: no QEMU in PATH ----
out=$tmp/unavail
mkdir -p "$tmp/emptybin"
PATH=$tmp/emptybin "$ACCORD" certify --target qemu:kvm --target qemu:tcg --kernels build/guest --out "$out" \
	--os-image "$OS_IMG" >"$tmp/unavail.stdout" 2>&1
rc=$?
check "certify without QEMU: exit status 0" test "$rc" -eq 0
check "certify without QEMU: says unavailable, with the reason" \
	grep -q "^target qemu:kvm: unavailable: .*$QEMU" "$tmp/unavail.stdout"
pycheck "report.json without QEMU: unavailable, not failed" '
import json, sys
d = json.load(open(sys.argv[1]))
for t in d["targets"]:
    assert t["available"] is False and t["verdict"] == "unavailable", t
    assert "qemu-system-x86_64" in t["reason"], t
    assert t["failed"] == 0 and t["errors"] == 0, t
for t in d["tests"]:
    for r in t["results"].values():
        assert r["verdict"] == "unavailable", t
' "$out/report.json"

# ---- a stand-in for QEMU: hostile text, a hang, a crash, no DONE ----
fake=$tmp/fakebin
mkdir -p "$fake" "$tmp/kernels"
for k in hostile hang crash nodone; do : >"$tmp/kernels/$k.elf"; done
: >"$tmp/kernels/"$'odd<&\xff'.elf	# a file name that is not text
cat >"$fake/$QEMU" <<'FAKE'
#!/usr/bin/env bash
kernel=
[ -z "${FAKE_ARGS:-}" ] || printf '%s\n' "$@" >"$FAKE_ARGS"
while [ $# -gt 0 ]; do
	[ "$1" = -kernel ] && kernel=$2
	shift
done
case "${kernel##*/}" in
hostile.elf)
	printf 'PASS <script>alert(1)</script>\r\n'
	printf 'FAIL amp&quot"'"'"'x: reason <b>bold</b> & \x01\x1b[31m \xff\xfe ]]> end\n'
	printf 'SKIP skip.me: no "reason" </pre></td>\n'
	printf 'DONE passed=1 failed=1 skipped=1\n'
	exit 3 ;;
hang.elf)
	printf 'PASS hang.before\n'
	exec sleep 600 ;;
crash.elf)
	printf 'PASS crash.before\n'
	kill -SEGV $$ ;;
nodone.elf)
	printf 'PASS nodone.one\n'
	exit 1 ;;
cond.elf)
	printf 'FAIL cond.a: a\nFAIL cond.b: b\nFAIL cond.c: c\nDONE passed=0 failed=3 skipped=0\n'
	exit 3 ;;
fam.elf | bogus.elf)
	printf 'PASS fam.ran\nDONE passed=1 failed=0 skipped=0\n'
	exit 1 ;;
vmlinuz)	# a Linux guest that sees another machine than the one configured
	printf 'accord-os: kernel 0.0.0-other\n'
	printf 'accord-os: nproc 1\naccord-os: cpuinfo 2\n'
	printf 'accord-os: memtotal_kb 900000\n'
	printf 'accord-os: clocksource jiffies\naccord-os: clocksources tsc\n'
	printf 'accord-os: vda_sectors none\n'
	printf 'accord-os: modules_asked virtio_pci virtio_blk\naccord-os: modules_loaded virtio_pci\n'
	printf 'accord-os: done ok\n'
	exit 0 ;;
esac
FAKE
chmod +x "$fake/$QEMU"
out=$tmp/fake
PATH=$fake:$PATH "$ACCORD" certify --target qemu:tcg --kernels "$tmp/kernels" --out "$out" \
	--timeout 2 --no-os >"$tmp/fake.stdout" 2>&1
rc=$?
sed 's/^/# /' "$tmp/fake.stdout"
check "certify with broken runs: exit status 0" test "$rc" -eq 0
pycheck "report.json: guest text kept, escaped; broken runs are errors" '
import json, sys
d = json.load(open(sys.argv[1]))
r = {t["id"]: t["results"]["qemu:tcg"] for t in d["tests"]}
assert r["hostile.multiboot/<script>alert(1)</script>"]["verdict"] == "pass", r
f = r["hostile.multiboot/amp&quot\"\x27x"]
assert f["verdict"] == "fail" and "<b>bold</b>" in f["detail"] and "\\x01" in f["detail"] \
    and "\\xff" in f["detail"], f
assert r["hostile.multiboot/skip.me"]["verdict"] == "skip", r
assert r["hostile.multiboot/(run)"]["verdict"] == "pass", r
assert r["hang.multiboot/hang.before"]["verdict"] == "pass", r
assert r["hang.multiboot/(run)"]["verdict"] == "error", r
assert "timed out after 2 s" in r["hang.multiboot/(run)"]["detail"], r
assert "killed by signal 11" in r["crash.multiboot/(run)"]["detail"], r
assert "without a DONE line" in r["nodone.multiboot/(run)"]["detail"], r
t = d["targets"][0]
assert t["verdict"] == "not certified" and t["errors"] == 4 and t["failed"] == 1, t
assert r["odd<&\\xff.multiboot/(run)"]["verdict"] == "error", r
' "$out/report.json"
pycheck "junit.xml with hostile text: well-formed" \
	'import sys, xml.etree.ElementTree as ET; ET.parse(sys.argv[1])' "$out/junit.xml"
check "report.html with hostile text: escaped" \
	bash -c 'test -s "$1" && ! grep -qiE "<script|<b>bold|\"reason\" </pre>|odd<" "$1" && grep -q "&lt;script&gt;" "$1"' _ \
	"$out/report.html"

# ---- guest/families: the machine a family asks for ----
mkdir -p "$tmp/famkernels"
: >"$tmp/famkernels/fam.elf"
: >"$tmp/famkernels/bogus.elf"
printf '# comment\nfam\tcpus=3 disk=2M qemu-machine=q35\nbogus cpus=2 floppy=1\n' >"$tmp/famkernels/families"
out=$tmp/fam
FAKE_ARGS=$tmp/fam.args PATH=$fake:$PATH "$ACCORD" certify --target qemu:tcg --kernels "$tmp/famkernels" \
	--out "$out" --timeout 10 --no-os >"$tmp/fam.stdout" 2>&1
check "certify: a family's options become QEMU's -smp, -machine, a virtio-blk disk and -append" \
	bash -c 'a=$(tr "\n" " " <"$1"); for w in "-smp 3 " "-machine q35 " "-append cpus=3 disk=2M qemu-machine=q35 " \
		"-device virtio-blk-pci,drive=disk0,disable-legacy=on " "fam.disk.img,if=none,id=disk0,format=raw "; do
		case "$a" in *"$w"*) ;; *) echo "no \"$w\" in: $a"; exit 1 ;; esac; done' _ "$tmp/fam.args"
pycheck "report.json: an unknown family option is an error of that run, with the reason" '
import json, sys
d = json.load(open(sys.argv[1]))
r = {t["id"]: t["results"]["qemu:tcg"] for t in d["tests"]}
assert r["fam.multiboot/(run)"]["verdict"] == "pass", r["fam.multiboot/(run)"]
b = r["bogus.multiboot/(run)"]
assert b["verdict"] == "error" and "floppy=1" in b["detail"], b
k = {x["name"]: x for x in d["kernels"]}
assert k["fam.multiboot"]["machine"] == "cpus=3 disk=2M qemu-machine=q35", k
' "$out/report.json"

# ---- known deviations with conditions (guest/known-deviations) ----
mkdir -p "$tmp/condkernels"
: >"$tmp/condkernels/cond.elf"
printf '%s\t%s\t%s\n' "qemu:tcg kvm=emulated" cond/cond.a "NOMATCH-A" "qemu:* kvm=none" cond/cond.b "MATCH-B" \
	"qemu:tcg irqchip=user" cond/cond.c "NOMATCH-C" "qemu:tcg bogus=1" cond/cond.a "BOGUS" \
	>"$tmp/condkernels/known-deviations"
out=$tmp/cond
PATH=$fake:$PATH "$ACCORD" certify --target qemu:tcg --kernels "$tmp/condkernels" --out "$out" \
	--timeout 10 --no-os >"$tmp/cond.stdout" 2>"$tmp/cond.stderr"
check "certify: an unknown condition in known-deviations is said, with the line" \
	grep -q "unknown condition 'bogus=1' (irqchip=, kvm=): qemu:tcg" "$tmp/cond.stderr"
pycheck "report.json: a known deviation applies only where its conditions hold (qemu:tcg has kvm=none, no irqchip)" '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["targets"][0]["machine"] == "kvm=none", d["targets"][0]
n = {t["name"]: t["note"] for t in d["tests"] if t["kernel"] == "cond.multiboot"}
assert n["cond.a"] is None and n["cond.c"] is None, n
assert "MATCH-B" in n["cond.b"] and "with kvm=none" in n["cond.b"], n
' "$out/report.json"

# accord:kvm: every difference from the architecture is listed with its
# reason, for this host's KVM (the probe) and the irqchip accord chooses
# (split where the host's KVM can): the timers family, whose LAPIC checks
# differ on an emulated KVM's LAPIC
if ! "$ACCORD" run --kernel /nonexistent --accel kvm 2>&1 </dev/null | grep -q '^accord: --accel kvm: '; then
	kind=$(kvm_kind "$ACCORD")
	irqchip=$(kvm_irqchip "$ACCORD")
	mkdir -p "$tmp/kvmkernels"
	cp build/guest/timers.elf build/guest/families build/guest/known-deviations "$tmp/kvmkernels/"
	out=$tmp/kvmcert
	"$ACCORD" certify --target accord:kvm --kernels "$tmp/kvmkernels" --out "$out" --no-os \
		>"$tmp/kvmcert.stdout" 2>&1
	sed 's/^/# /' "$tmp/kvmcert.stdout"
	pycheck "report.json: accord:kvm (kvm=$kind irqchip=$irqchip): the run is clean and every FAIL is a listed deviation" '
import json, sys
d = json.load(open(sys.argv[1])); kind, irqchip = sys.argv[2], sys.argv[3]
t = d["targets"][0]
assert t["machine"].startswith("kvm=%s irqchip=%s" % (kind, irqchip)), t
assert t["errors"] == 0, t
fails = [(x["name"], x["note"]) for x in d["tests"] if x["results"]["accord:kvm"]["verdict"] == "fail"]
assert all(note and "known deviation of accord:kvm" in note for name, note in fails), fails
ran = [x for x in d["tests"] if x["results"]["accord:kvm"]["verdict"] == "pass"]
assert len(ran) > 20, len(ran)
' "$out/report.json" "$kind" "$irqchip"
else
	tap_skip "report.json: accord:kvm, every FAIL a listed deviation" "no usable /dev/kvm"
fi

# ---- the OS-level checks judge what the guest reports ----
mkdir -p "$tmp/osimg" "$tmp/oskernels"
: >"$tmp/osimg/vmlinuz"
: >"$tmp/osimg/initrd.cpio.gz"
echo 6.1.0-test-amd64 >"$tmp/osimg/kernel.release"
: >"$tmp/oskernels/nodone.elf"
out=$tmp/fakeos
PATH=$fake:$PATH "$ACCORD" certify --target qemu:tcg --kernels "$tmp/oskernels" --out "$out" \
	--timeout 10 --os-image "$tmp/osimg" >"$tmp/fakeos.stdout" 2>&1
check "certify with a misreporting OS guest: exit status 0" test "$?" -eq 0
pycheck "report.json: OS-level values that disagree with the machine are FAILs" '
import json, sys
d = json.load(open(sys.argv[1]))
r = {t["name"]: t["results"]["qemu:tcg"] for t in d["tests"] if t["kernel"] == "os.linux"}
for name in ("boot.kernel_release", "cpus.nproc", "memory.memtotal", "clocksource.current",
             "clocksource.available", "disk.vda_present", "modules.loaded"):
    assert r[name]["verdict"] == "fail", (name, r[name])
assert r["cpus.cpuinfo"]["verdict"] == "pass", r["cpus.cpuinfo"]
assert r["(run)"]["verdict"] == "pass", r["(run)"]
assert "missing: virtio_blk" in r["modules.loaded"]["detail"], r["modules.loaded"]
assert r["disk.vda_size"]["verdict"] == "error", r["disk.vda_size"]
' "$out/report.json"

out=$tmp/noos
PATH=$fake:$PATH "$ACCORD" certify --target qemu:tcg --kernels "$tmp/oskernels" --out "$out" \
	--timeout 10 --os-image "$tmp/nothing-here" >"$tmp/noos.stdout" 2>&1
pycheck "report.json: without a guest image the OS-level run is skipped, with the reason" '
import json, sys
d = json.load(open(sys.argv[1]))
r = {t["name"]: t["results"]["qemu:tcg"] for t in d["tests"] if t["kernel"] == "os.linux"}
assert r["(run)"]["verdict"] == "skip" and "make certify-image" in r["(run)"]["detail"], r["(run)"]
assert all(x["verdict"] == "skip" for x in r.values()), r
' "$out/report.json"

# ---- bad command lines ----
check "certify: unknown target is a usage error (status 1)" \
	bash -c '"$1" certify --target bochs:x >/dev/null 2>&1; test $? -eq 1' _ "$ACCORD"
check "certify: no kernels is status 2" \
	bash -c 'mkdir -p "$2/empty" && "$1" certify --kernels "$2/empty" --out "$2/o" >/dev/null 2>&1; test $? -eq 2' \
	_ "$ACCORD" "$tmp"

tap_summary
