"""``cossl-edge serve CLASSIFIER.json``: a DICOM node that receives images by C-STORE,
classifies each series and sends a Comprehensive SR to a PACS (extra ``[node]``)."""

from __future__ import annotations

from pathlib import Path

import typer

from cossl_edge.commands.common import choices, fail, plain, renamed, user_errors, warn
from cossl_edge.node.config import AGGREGATIONS

NODE_HINT = "pip install 'cossl-edge[node]'"
Aggregate = choices("Aggregate", AGGREGATIONS)
EOSTUDY_DEFAULT = 10.0
HEATMAP_COUNT_DEFAULT = 4


def serve(
    classifier_file: Path = typer.Argument(..., help="Classifier JSON from fewshot fit."),
    port: int = typer.Option(11112, "--port", help="TCP port to listen on."),
    ae_title: str = typer.Option("COSSL", "--ae-title", help="This node's AE title (the "
                                 "called AE title must match it)."),
    host: str = typer.Option("0.0.0.0", "--host", help="Address to listen on (0.0.0.0: "
                             "every interface; 127.0.0.1: this machine only)."),
    state_dir: Path = typer.Option(Path("cossl-node"), "--state-dir", help="Spool, "
                                   "quarantine, reports, state.sqlite and node.jsonl; a "
                                   "restart with the same folder resumes."),
    allow: list[str] = typer.Option([], "--allow", help="Calling AE title accepted "
                                    "(repeat; default: any)."),
    eostudy_timeout: float = typer.Option(EOSTUDY_DEFAULT, "--eostudy-timeout", min=0.0,
                                          help="Seconds without a new instance after which "
                                          "a series is complete (as dcmtk storescp's "
                                          "--eostudy-timeout)."),
    quiet: float | None = typer.Option(None, "--quiet", min=0.0, hidden=True,
                                       help="Deprecated name of --eostudy-timeout."),
    rules: Path | None = typer.Option(None, "--rules", help="Selection rules (JSON; see "
                                      "docs/node.md) (default: every image)."),
    aggregate: Aggregate = typer.Option(Aggregate("max"), "--aggregate", help="Series "
                                        "result: max (its most abnormal image) or mean (mean "
                                        "probabilities)."),
    abstain: float | None = typer.Option(None, "--abstain", min=0.0, max=1.0, help="Abstain "
                                         "threshold (default: the classifier's)."),
    normal_class: str | None = typer.Option(None, "--normal-class", help="The class without "
                                            "a finding, for --aggregate max (default: one "
                                            "named normal, no_finding, negative, …)."),
    forward: str | None = typer.Option(None, "--forward", help="Send each SR by C-STORE to "
                                       "AE_TITLE@HOST:PORT (retries with back-off)."),
    model: Path | None = typer.Option(None, "--model", help="Encoder ONNX file (default: the "
                                      "one recorded at fit); it must be that same model."),
    retry_base: float = typer.Option(1.0, "--retry-base", min=0.01, help="First retry delay "
                                     "(s); doubles per attempt."),
    retry_max: float = typer.Option(300.0, "--retry-max", min=0.01, help="Longest delay (s)."),
    max_attempts: int = typer.Option(50, "--max-attempts", min=1, help="Attempts per SR."),
    max_instance_mb: float = typer.Option(512.0, "--max-instance-mb", min=0.001, help="Refuse "
                                          "larger instances (Out of Resources)."),
    max_spool_gb: float = typer.Option(50.0, "--max-spool-gb", min=0.001, help="Refuse new "
                                       "instances when the spool holds this much."),
    retain_hours: float = typer.Option(24.0, "--retain-hours", min=0.0, help="Keep a "
                                       "finished series' files in the spool this long."),
    threads: int = typer.Option(1, "--threads", min=0, help="onnxruntime threads. Default "
                                "1: the node classifies one series at a time in the "
                                "background, beside the scanner's or PACS's own services, "
                                "and a series of a few images does not need more; 0: "
                                "onnxruntime's choice, every core (embed and fewshot's "
                                "default, for batch jobs)."),
    heatmap_count: int = typer.Option(HEATMAP_COUNT_DEFAULT, "--heatmap-count", min=0,
                                      help="With a local classifier (fewshot fit "
                                      "--classifier local): at most this many heatmap "
                                      "Secondary Captures per series, the images most likely "
                                      "to hold a finding; 0 for none."),
    send: str = typer.Option("sr,pmap,seg,sc", "--send", help="The objects written and "
                             "sent per series, comma-separated: sr (the Comprehensive SR, "
                             "always), and with a classifier that gives heatmaps pmap (a "
                             "Parametric Map of P(finding) per image called a finding), seg "
                             "(a BINARY Segmentation of it above the calibrated threshold), "
                             "sc (heatmap Secondary Captures, for viewers that show nothing "
                             "else; at most --heatmap-count). E.g. --send sr,sc: SR and "
                             "pictures only."),
    heatmaps: int | None = typer.Option(None, "--heatmaps", min=0, hidden=True,
                                        help="Deprecated name of --heatmap-count."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="DICOM over TLS: this "
                                         "node's certificate (PEM); with --tls-key."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="The private key of "
                                        "--tls-cert (PEM, unencrypted)."),
    tls_ca: Path | None = typer.Option(None, "--tls-ca", help="Require a client certificate "
                                       "signed by this CA (PEM); others are refused at the "
                                       "TLS handshake."),
    forward_tls_ca: Path | None = typer.Option(None, "--forward-tls-ca", help="--forward "
                                               "over TLS, the PACS's certificate verified "
                                               "against this CA (PEM)."),
    forward_tls_cert: Path | None = typer.Option(None, "--forward-tls-cert", help="--forward "
                                                 "over TLS with this client certificate "
                                                 "(PEM); with --forward-tls-key."),
    forward_tls_key: Path | None = typer.Option(None, "--forward-tls-key", help="The "
                                                "private key of --forward-tls-cert (PEM)."),
    forward_tls: bool = typer.Option(False, "--forward-tls", help="--forward over TLS, the "
                                     "PACS's certificate verified against the system's trust "
                                     "store (implied by the --forward-tls-* options)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also print the log lines."),
) -> None:
    """Receive DICOM images (C-STORE, C-ECHO), classify complete series, write and forward
    a Comprehensive SR per series (and, with a classifier that gives heatmaps, Parametric
    Maps, Segmentations and heatmap Secondary Captures: --send). Stop with Ctrl-C or
    SIGTERM; a restart resumes."""
    eostudy_timeout = renamed(eostudy_timeout, quiet, EOSTUDY_DEFAULT, "--quiet",
                              "--eostudy-timeout")
    heatmap_count = renamed(heatmap_count, heatmaps, HEATMAP_COUNT_DEFAULT, "--heatmaps",
                            "--heatmap-count")
    with user_errors():
        try:
            from cossl_edge.node.server import Node
        except ImportError as e:
            fail(f"the DICOM node needs its extra ({e.name} missing): {NODE_HINT}")
        from cossl_edge.node.config import Destination, NodeConfig, parse_send
        from cossl_edge.node.tls import TlsFiles, client_context, server_context

        tls = forward_files = None
        if tls_cert or tls_key or tls_ca:
            tls = TlsFiles(tls_cert, tls_key, tls_ca)
            server_context(tls)  # read now: a wrong file stops here, with its name
        if forward_tls or forward_tls_ca or forward_tls_cert or forward_tls_key:
            if not forward:
                raise ValueError("--forward-tls* options need --forward")
            forward_files = TlsFiles(forward_tls_cert, forward_tls_key, forward_tls_ca)
            client_context(forward_files)
        cfg = NodeConfig(
            state_dir=state_dir, port=port, ae_title=ae_title, host=host,
            allowed_aes=tuple(allow), quiet_seconds=eostudy_timeout, rules_file=rules,
            aggregate=plain(aggregate), abstain=abstain, normal_class=normal_class,
            destination=Destination.parse(forward) if forward else None,
            retry_base_seconds=retry_base, retry_max_seconds=retry_max,
            max_send_attempts=max_attempts, max_instance_bytes=int(max_instance_mb * 2**20),
            max_spool_bytes=int(max_spool_gb * 2**30), retain_seconds=retain_hours * 3600,
            threads=threads, heatmaps=heatmap_count, send=parse_send(send), tls=tls,
            forward_tls=forward_files)
        check_inputs(classifier_file, model, rules)  # before the node makes any folder
        for line in exposure_warnings(host, allow) + plain_warnings(tls, forward,
                                                                   forward_files):
            warn(line)
        node = Node(cfg, classifier_file, model, echo_log=verbose)
        mode = ("DICOM over TLS, client certificates required" if tls and tls.ca else
                "DICOM over TLS" if tls else "plain DICOM")
        typer.echo(f"cossl-edge node {ae_title} listening on {host}:{port} ({mode}); state "
                   f"in {state_dir}" + (f"; SRs to {cfg.destination}"
                                        f"{' over TLS' if forward_files else ''}"
                                        if forward else ""), err=True)
        node.serve_forever()


def check_inputs(classifier_file: Path, model: Path | None, rules: Path | None) -> None:
    """The files the node reads, read once before it creates its state folder, so that a
    wrong path leaves nothing behind: the classifier, the model it records (or --model),
    the rules."""
    from cossl_edge.fewshot import FewShotClassifier
    from cossl_edge.node.rules import Rules

    clf = FewShotClassifier.load(classifier_file)
    if model is None and not clf.model_path:
        raise ValueError(f"{classifier_file}: records no model; pass --model MODEL.onnx")
    model_path = Path(model or clf.model_path)
    if not model_path.is_file():
        given = "--model" if model is not None else f"the model {classifier_file} records"
        raise FileNotFoundError(f"{model_path}: no such file ({given}); pass --model "
                                "MODEL.onnx, the encoder the classifier was fitted on")
    Rules.load(rules)


def exposure_warnings(host: str, allow: list[str]) -> list[str]:
    """Who can reach the node and send it images, when that is anyone."""
    out = []
    if host in ("0.0.0.0", "::", ""):
        out.append(f"listening on every network interface ({host or 'all'}): any machine "
                   "that can reach this port can send images; --host 127.0.0.1 (or this "
                   "machine's address on the scanner network) limits that")
    if not allow:
        out.append("accepting any calling AE title; --allow AE_TITLE (repeat) accepts only "
                   "those senders")
    return out


def plain_warnings(tls, forward: str | None, forward_tls) -> list[str]:
    """What travels unencrypted: images arriving, reports leaving."""
    out = []
    if tls is None:
        out.append("plain DICOM (no TLS): images arrive unencrypted and any client that "
                   "reaches the port may associate; --tls-cert/--tls-key (and --tls-ca to "
                   "require client certificates) turn TLS on")
    elif tls.ca is None:
        out.append("TLS without --tls-ca: connections are encrypted but clients are not "
                   "authenticated by certificate")
    if forward and forward_tls is None:
        out.append(f"--forward {forward} over plain DICOM: reports leave unencrypted; "
                   "--forward-tls-ca CA.pem (or --forward-tls) sends them over TLS")
    return out


def register(app: typer.Typer) -> None:
    app.command(name="serve", no_args_is_help=True)(serve)
