"""DICOM node throughput: instances/s received and classified end to end, with 1 and 4
associations, and the delay from a series' completion to its SR in the PACS; with a
prototype classifier (an SR per series), with a local classifier whose series get a
Parametric Map and a SEG with a frame per image called a finding (``--send sr,pmap,seg``),
and the same with the scanner's associations over TLS.

Real components on loopback, as in tests/test_node.py: dcmtk's storescu as the scanner
(``+tls`` with a client certificate for the TLS setting, the node requiring one), ``cossl-edge
serve`` as the node, Orthanc as the PACS (plain DICOM in every setting). The model is the
default one of ``cossl-edge pretrain`` (ResNet-10, width 0.25, 64 px, 1 channel),
random-init, exported with its local map to static int8 with
``cossl_edge.export.export_run`` (the figures are about speed, not accuracy). The
classifiers: prototype, fitted on CT phantoms; local (PatchCore-like memory), fitted on 5
normal and 5 bright-disk blob images (tests/node_data.py).

For each setting a fresh node receives ``--per`` images per association (one series per
association): CT phantom slices (96 px) for the prototype classifier, blob images (96 px,
every other one with a bright disk, a CT frame of reference) for the local one.

- received/s: acknowledged instances / (first association opened → last storescu exit);
- classified/s: instances / (first association opened → every instance classified);
- in PACS/s: instances / (first association opened → every series' SR, maps and SEGs
  acknowledged by Orthanc, less the quiet period the node waits after a series' last
  instance: a wait it spends receiving the next series when they come one after another),
  and the same with the quiet period;
- SR delay: from a series' completion (its last instance + the quiet period) to its SR (and
  the maps and SEGs sent before it) being stored in Orthanc, read from the node's log;
- PMAP / SEG: their frames and objects counted in Orthanc's index per study; the frames
  must be the images the node called a finding.

    .venv/bin/python benchmarks/node_throughput.py [--per 200] [--quiet 1]
        [--settings prototype,overlays,overlays-tls]

Writes its figures between the node-throughput markers of docs/benchmarks.md and all
readings to benchmarks/results/node_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import node_support as ns
from doc_section import replace_section
from random_model import exported_random_model

START, END = "<!-- node-throughput:start -->", "<!-- node-throughput:end -->"
RESULTS = ROOT / "benchmarks" / "results" / "node_throughput.json"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"
SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"


@dataclass(frozen=True)
class Setting:
    name: str
    classifier: str  # prototype | local
    send: str | None  # serve's --send; None: its default
    tls: bool  # the scanner's associations over TLS (client certificates required)


SETTINGS = {s.name: s for s in (
    Setting("prototype", "prototype", None, False),
    Setting("overlays", "local", "sr,pmap,seg", False),
    Setting("overlays-tls", "local", "sr,pmap,seg", True),
)}


def scanner_series(work: Path, setting: Setting, associations: int, per: int
                   ) -> list[list[Path]]:
    """One series per association: CT phantom slices, or blob images (every other one with
    a bright disk) on a CT frame of reference for the local classifier."""
    out = []
    for k in range(associations):
        key = f"{setting.name}-{associations}-{k}"
        patient = 100 + 10 * associations + k + 40 * list(SETTINGS).index(setting.name)
        if setting.classifier == "local":
            files, _ = ns.write_blob_series(work / key, ["normal", "bright"] * (per // 2)
                                            + ["bright"] * (per % 2), key, patient=patient,
                                            seed=k, size=96, geometry=True)
        else:
            files = ns.write_series(work / key, per, key, patient=patient)
        out.append(files)
    return out


def objects_in_pacs(pacs, study_uids: list[str]) -> dict[str, int]:
    """SRs, Parametric Maps and SEGs (objects, and their frames) Orthanc holds in these
    studies (its index)."""
    total = dict.fromkeys(("sr", "pmap", "seg", "pmap_frames", "seg_frames"), 0)
    for uid in study_uids:
        objects, frames = pacs.sop_classes(uid), pacs.sop_classes(uid, frames=True)
        total["sr"] += objects[COMPREHENSIVE_SR]
        for kind, sop_class in (("pmap", PARAMETRIC_MAP), ("seg", SEGMENTATION)):
            total[kind] += objects[sop_class]
            total[f"{kind}_frames"] += frames[sop_class]
    return total


def rates(t0: float, t_recv: float, acked: int, total: int, quiet: float,
          events: list[dict]) -> dict:
    """The setting's figures from its start, storescu's end and the node's log."""
    classified_at = max(e["t"] for e in events if e["event"] == "image")
    sent_at = {e["series"]: e["t"] for e in events if e["event"] == "sent"}
    complete_at = {e["series"]: e["t"] for e in events if e["event"] == "series_complete"}
    delays = [sent_at[s] - complete_at[s] for s in sent_at]
    reports = [e for e in events if e["event"] == "report"]
    return {"received_per_s": acked / (t_recv - t0),
            "classified_per_s": total / (classified_at - t0),
            "in_pacs_per_s": total / (max(sent_at.values()) - t0 - quiet),
            "in_pacs_with_quiet_per_s": total / (max(sent_at.values()) - t0),
            "sr_delay_max_s": max(delays), "sr_delay_mean_s": sum(delays) / len(delays),
            "report_s": [e["s"] for e in reports],
            "send_s": [e["s"] for e in events if e["event"] == "sent"]}


def run_setting(work: Path, setting: Setting, classifier: Path, pacs, associations: int,
                per: int, quiet: float, pki: dict | None) -> dict:
    import pydicom

    series = scanner_series(work, setting, associations, per)
    extra = ["--eostudy-timeout", str(quiet)]
    if setting.send:
        extra += ["--send", setting.send]
    client_tls = None
    if setting.tls:
        extra += ["--tls-cert", str(pki["node"][0]), "--tls-key", str(pki["node"][1]),
                  "--tls-ca", str(pki["ca"][0])]
        cert, key = pki["scanner"]
        client_tls = ["+tls", str(key), str(cert), "+cf", str(pki["ca"][0])]
    node = ns.NodeProcess(classifier, work / f"node-{setting.name}-{associations}",
                          forward=f"{ns.PACS_AE}@127.0.0.1:{pacs.dicom_port}", extra=extra,
                          client_tls=client_tls)
    node.start()
    try:
        t0 = time.time()
        procs = [ns.storescu(node.port, files, background=True, tls=client_tls)
                 for files in series]
        outs = [p.communicate(timeout=600)[0] for p in procs]
        t_recv = time.time()
        acked = sum(len(ns.acknowledged(o)[0]) for o in outs)
        total = associations * per

        def done():
            with node.db() as db:
                n = db.execute("SELECT COUNT(*) FROM instances WHERE state='classified'"
                               ).fetchone()[0]
                sent = db.execute("SELECT COUNT(*) FROM series WHERE state='sent'").fetchone()[0]
            return n == total and sent == associations

        ns.wait_until(done, 600, "every instance classified and every series sent", 0.05)
        with node.db() as db:
            called = db.execute("SELECT COUNT(*) FROM instances WHERE label='bright'"
                                ).fetchone()[0]
        ns.wait_until(lambda: len([e for e in node.events() if e["event"] == "sent"])
                      == associations, 30, "the sent lines")
        figures = rates(t0, t_recv, acked, total, quiet, node.events())
    finally:
        node.stop()
    studies = [str(pydicom.dcmread(f[0], stop_before_pixels=True).StudyInstanceUID)
               for f in series]
    stored = objects_in_pacs(pacs, studies)
    assert stored["sr"] == associations, f"{stored['sr']} of {associations} SRs in Orthanc"
    if setting.classifier == "local":
        assert stored["pmap_frames"] == stored["seg_frames"] == called, (stored, called)
    return {"setting": setting.name, "associations": associations, "instances": total,
            "acked": acked, "called": called, "stored": stored, **figures}


def make_pki(folder: Path) -> dict:
    folder.mkdir(parents=True)
    ca = ns.make_ca(folder, "bench-ca")
    return {"ca": ca, "node": ns.make_cert(folder, "node", ca),
            "scanner": ns.make_cert(folder, "scanner", ca)}


def storescu_to_orthanc(work: Path, pacs, per: int) -> float:
    """The same scanner straight into Orthanc (a C++ SCP): what this machine allows now."""
    files = ns.write_series(work / "reference", per, "bench-reference", patient=190)
    t0 = time.time()
    out = ns.storescu(pacs.dicom_port, files, called=ns.PACS_AE, timeout=600)
    assert out.returncode == 0, out.stdout[-1000:]
    return len(ns.acknowledged(out.stdout + out.stderr)[0]) / (time.time() - t0)


def node_sender_to_orthanc(work: Path, pacs, per: int, quick_ack: bool) -> float:
    """The node's C-STORE SCU into Orthanc, one association, Nagle off: acknowledging
    Orthanc's responses at once (``LowLatencyAE``, what the node forwards with) or when the
    kernel's delayed acknowledgement fires (pynetdicom's own AE)."""
    import pydicom
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage

    from cossl_edge.node.transport import LowLatencyAE, no_delay

    files = ns.write_series(work / f"reference-sender-{quick_ack}", per, "bench-sender",
                            patient=192 + quick_ack)
    datasets = [pydicom.dcmread(f) for f in files]
    ae = (LowLatencyAE if quick_ack else AE)(ae_title=ns.NODE_AE)
    ae.add_requested_context(CTImageStorage)
    t0 = time.time()
    assoc = ae.associate("127.0.0.1", pacs.dicom_port, ae_title=ns.PACS_AE)
    assert assoc.is_established
    no_delay(assoc.dul.socket.socket)
    try:
        assert all(assoc.send_c_store(ds).Status == 0 for ds in datasets)
    finally:
        assoc.release()
    return per / (time.time() - t0)


BARE_SCP = """
import sys, threading
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification
from cossl_edge.node.transport import start_server
ae = AE(ae_title=sys.argv[2])
ae.add_supported_context(Verification)
for cx in AllStoragePresentationContexts:
    ae.add_supported_context(cx.abstract_syntax, ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])
handlers = [(evt.EVT_C_STORE, lambda e: (e.encoded_dataset(), 0)[1])]
if sys.argv[3] == "node-transport":
    start_server(ae, ("127.0.0.1", int(sys.argv[1])), handlers)
    threading.Event().wait()
else:
    ae.start_server(("127.0.0.1", int(sys.argv[1])), block=True, evt_handlers=handlers)
"""


def storescu_to_bare_pynetdicom(work: Path, per: int, transport: str = "pynetdicom") -> float:
    """The same scanner into a pynetdicom SCP that keeps nothing: pynetdicom's own ceiling,
    with its own connections (``pynetdicom``) or the node's (``node-transport``: quick
    acknowledgements, no Nagle; :mod:`cossl_edge.node.transport`)."""
    import subprocess

    script = work / "bare_scp.py"
    script.write_text(BARE_SCP)
    port = ns.free_port()
    proc = subprocess.Popen([sys.executable, str(script), str(port), ns.NODE_AE, transport])
    try:
        ns.wait_until(lambda: ns.echo(port), 60, "the bare SCP")
        files = ns.write_series(work / f"reference-{transport}", per, f"bench-{transport}",
                                patient=191)
        t0 = time.time()
        out = ns.storescu(port, files, timeout=600)
        return len(ns.acknowledged(out.stdout + out.stderr)[0]) / (time.time() - t0)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per", type=int, default=200, help="instances per association")
    ap.add_argument("--quiet", type=float, default=1.0, help="series quiet period (s)")
    ap.add_argument("--settings", default=",".join(SETTINGS),
                    help=f"comma-separated, of {', '.join(SETTINGS)}")
    ap.add_argument("--no-doc", action="store_true", help="print only")
    args = ap.parse_args()
    chosen = [SETTINGS[name.strip()] for name in args.settings.split(",")]
    loads = [os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        calib = work / "calib"
        ns.write_series(calib, 64, "calibration", patient=200)
        t = time.time()
        model = exported_random_model(work / "model" / "run", calib, local_map=True)
        print(f"model exported in {time.time() - t:.0f} s ({model.stat().st_size / 1e6:.1f} MB)")
        classifiers = {"prototype": ns.make_classifier(work / "clf", model=model),
                       "local": ns.make_local_classifier(work / "clf-local", model=model)}
        pki = make_pki(work / "pki") if any(s.tls for s in chosen) else None
        rows = []
        with ns.running_orthanc(work / "pacs") as pacs:
            for setting in chosen:
                for a in (1, 4):
                    rows.append(run_setting(work, setting, classifiers[setting.classifier],
                                            pacs, a, args.per, args.quiet, pki))
                    loads.append(os.getloadavg())
                    print({k: v for k, v in rows[-1].items() if k not in ("report_s", "send_s")})
            reference = storescu_to_orthanc(work, pacs, args.per)
            sender = {f"node_sender_to_orthanc_quick_ack_{q}".lower():
                      node_sender_to_orthanc(work, pacs, args.per, q) for q in (False, True)}
        bare = storescu_to_bare_pynetdicom(work, args.per)
        bare_fast = storescu_to_bare_pynetdicom(work, args.per, "node-transport")
    loads.append(os.getloadavg())
    command = ".venv/bin/python benchmarks/node_throughput.py" + "".join(
        f" {flag} {value}" for flag, value, default in (
            ("--per", args.per, 200), ("--quiet", f"{args.quiet:g}", "1"),
            ("--settings", args.settings, ",".join(SETTINGS))) if str(value) != str(default))
    print(f"reference: storescu -> Orthanc {reference:.1f}, -> bare pynetdicom {bare:.1f}, "
          f"-> bare pynetdicom with the node's transport {bare_fast:.1f} instances/s")
    record = {"command": command, "cpus": os.cpu_count(), "machine": platform.machine(),
              "loadavg_1_5_15": [[round(v, 2) for v in la] for la in loads],
              "settings": [asdict(s) for s in chosen], "rows": rows,
              "reference_per_s": {"storescu_to_orthanc": reference, "bare_pynetdicom": bare,
                                  "bare_pynetdicom_node_transport": bare_fast, **sender}}
    text = doc_section(record, args.per, args.quiet)
    if not args.no_doc:
        RESULTS.write_text(json.dumps(record, indent=1) + "\n")
        replace_section(START, END, text)
    print(text)


LABELS = {"prototype": "prototype, SR", "overlays": "local, SR + PMAP + SEG",
          "overlays-tls": "local, SR + PMAP + SEG, scanner over TLS"}


def doc_section(record: dict, per: int, quiet: float) -> str:
    rows = record["rows"]
    table = "\n".join(
        f"| {LABELS[r['setting']]} | {r['associations']} | {r['instances']} | "
        + (f"{r['called']} | {r['stored']['pmap_frames']} / {r['stored']['seg_frames']} "
           f"({r['stored']['pmap']} / {r['stored']['seg']}) | "
           if r["setting"] != "prototype" else "– | – | ")
        + f"{r['received_per_s']:.0f} | {r['classified_per_s']:.0f} | "
        f"{r['in_pacs_per_s']:.0f} ({r['in_pacs_with_quiet_per_s']:.0f}) | "
        f"{r['sr_delay_mean_s']:.2f} / {r['sr_delay_max_s']:.2f} |"
        for r in rows)
    loads = record["loadavg_1_5_15"]
    load_1 = [la[0] for la in loads]
    ok_rate = all(r["in_pacs_per_s"] >= 50 for r in rows)
    ok_delay = all(r["sr_delay_max_s"] <= 2.0 for r in rows)
    ref = record["reference_per_s"]
    return f"""{START}
## DICOM node (`benchmarks/node_throughput.py`)

`{record['command']}`

dcmtk `storescu` (one series of {per} images, 96 px, per association) → `cossl-edge serve`
(quiet period {quiet:g} s, fsync'd spool, SQLite WAL) → Orthanc (the PACS, by C-STORE), all
on loopback. Model: the default encoder of `pretrain` (ResNet-10 width 0.25, 64 px, 1
channel), random-init, exported with its local map, static int8, `--threads 1`. The
prototype classifier (fitted on CT phantoms) gets CT phantom slices and sends an SR per
series. The local classifier (memory scoring, fitted on 5 normal and 5 bright-disk blob
images) gets blob images, every other one with a bright disk, on a CT frame of reference,
and sends with `--send sr,pmap,seg`: per series a Parametric Map and a BINARY SEG with a
frame per image called a finding, then the SR; "called" is how many images the node called
a finding, "PMAP / SEG" how many frames (and objects) of each Orthanc's index holds for
those studies afterwards (the benchmark fails unless the frames are the images called).
"Over TLS": storescu `+tls` with a client certificate to the node's
`--tls-cert/--tls-key/--tls-ca` (client certificates required); the node forwards to
Orthanc in plain DICOM in every setting (`tests/test_node_tls.py` covers forwarding over
TLS). {record['cpus']} CPUs ({record['machine']}), shared with other jobs:
1-min load average {min(load_1):.1f}–{max(load_1):.1f} during the run (at the start, after each
setting, at the end); wall figures are noisy.

| classifier, objects | associations | instances | called a finding | PMAP / SEG frames in PACS (objects) | received/s | classified/s | in PACS/s (with the quiet period) | series complete → SR stored, mean / max (s) |
|---|---|---|---|---|---|---|---|---|
{table}

"classified/s": instances / (first association opened → every instance classified). "In
PACS/s": instances / (first association opened → the node's `sent` event of the last
series, Orthanc having acknowledged its maps, SEGs and SR), less the one quiet period of
{quiet:g} s the node waits after the last instance before it calls the series complete: when
series come one after another it receives the next one meanwhile, so the wait costs delay,
not throughput; in brackets the same with the wait (`serve`'s default
`--eostudy-timeout` is 10 s). "Complete" is the node's `series_complete` event (last
instance + quiet period); "stored" its `sent` event.

References, the same scanner and as many files, one association, in the same run: straight
into Orthanc (a C++ C-STORE SCP) {ref['storescu_to_orthanc']:.0f} instances/s; into a
pynetdicom SCP that keeps nothing {ref['bare_pynetdicom']:.0f} instances/s, and
{ref['bare_pynetdicom_node_transport']:.0f} instances/s when that SCP's connections are the
node's (`cossl_edge/node/transport.py`). `storescu` as Debian ships it keeps Nagle's
algorithm on, so the tail of each C-STORE waits for the receiver's delayed acknowledgement
(up to 40 ms on Linux): a receiver that acknowledges at once (`TCP_QUICKACK`, re-armed after
every read) removes that wait; the other two do not. The same wait, the other way round,
when the node forwards: the node's C-STORE SCU (Nagle off) into Orthanc
{ref['node_sender_to_orthanc_quick_ack_false']:.0f} instances/s when it leaves its
acknowledgements to the kernel, {ref['node_sender_to_orthanc_quick_ack_true']:.0f}
instances/s when it acknowledges each read at once, as it forwards (`LowLatencyAE`). Past
that, the node's own work (header checks, the fsync'd spool and SQLite commit,
classification as instances arrive, the maps and SEGs, the log) costs CPU that the two
shared cores also give to the scanner, Orthanc and other jobs. Every reading (the report
and send times per series too) is in `benchmarks/results/node_throughput.json`.

Targets: ≥ 50 instances/s in the PACS (less the quiet period) in every setting:
**{'yes' if ok_rate else 'no'}**; the SR (and the maps and SEGs sent before it) stored
≤ 2 s after the series completes: **{'yes' if ok_delay else 'no'}**.
{END}
"""


if __name__ == "__main__":
    main()
