"""The node over TLS (``serve --tls-cert --tls-key --tls-ca``, ``--forward-tls-*``) against
real components on loopback: dcmtk's storescu/echoscu with ``+tls``/``+tla`` as the scanner,
an Orthanc that speaks DICOM TLS and requires client certificates as the PACS. Certificates
are made with the ``openssl`` command (``node_support.make_ca``, ``make_cert``): a CA, the
node's and the PACS's certificates (localhost, 127.0.0.1), a scanner's client certificate,
and a rogue CA's client certificate.

A client with a certificate the CA signed stores, and the SR reaches the PACS over TLS with
the node's own client certificate; a client without a certificate, with an untrusted one, or
speaking plain DICOM is refused at the handshake: nothing in the spool or the database, one
``tls_refused`` log line saying why.
"""

from __future__ import annotations

from pathlib import Path

import node_support as ns
import pydicom
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    folder = tmp_path_factory.mktemp("pki")
    ca, rogue = ns.make_ca(folder, "test-ca"), ns.make_ca(folder, "rogue-ca")
    return {"ca": ca, "rogue": rogue, "node": ns.make_cert(folder, "node", ca),
            "pacs": ns.make_cert(folder, "pacs", ca),
            "scanner": ns.make_cert(folder, "scanner", ca),
            "intruder": ns.make_cert(folder, "intruder", rogue)}


def dcmtk_tls(pki, who: str | None) -> list[str]:
    """storescu/echoscu options: a client certificate (``who``) or none (anonymous TLS),
    trusting the test CA for the node's certificate."""
    ca = ["+cf", str(pki["ca"][0])]
    if who is None:
        return ["+tla", *ca]
    cert, key = pki[who]
    return ["+tls", str(key), str(cert), *ca]


def spooled(state_dir: Path) -> list[Path]:
    return [p for p in (state_dir / "spool").rglob("*") if p.is_file()]


def test_tls_node_stores_trusted_clients_only_and_forwards_over_tls(tmp_path, classifier, pki):
    pacs_tls = {"DicomTlsEnabled": True, "DicomTlsCertificate": str(pki["pacs"][0]),
                "DicomTlsPrivateKey": str(pki["pacs"][1]),
                "DicomTlsTrustedCertificates": str(pki["ca"][0]),
                "DicomTlsRemoteCertificateRequired": True}
    pacs = ns.Orthanc(tmp_path / "orthanc", extra_config=pacs_tls).start()
    node = ns.NodeProcess(
        classifier, tmp_path / "node", forward=f"{ns.PACS_AE}@127.0.0.1:{pacs.dicom_port}",
        client_tls=dcmtk_tls(pki, "scanner"),
        extra=["--eostudy-timeout", "1",
               "--tls-cert", str(pki["node"][0]), "--tls-key", str(pki["node"][1]),
               "--tls-ca", str(pki["ca"][0]), "--forward-tls-ca", str(pki["ca"][0]),
               "--forward-tls-cert", str(pki["node"][0]),
               "--forward-tls-key", str(pki["node"][1])])
    try:
        node.start()
        out = node.stderr()
        assert "DICOM over TLS, client certificates required" in out and "over TLS" in out
        assert "plain DICOM" not in out, out
        files = ns.write_series(tmp_path / "src", 3, "tls", finding_every=2, patient=7)

        def refused(tls: list[str] | None) -> dict:
            before = [e for e in node.events() if e["event"] == "tls_refused"]
            r = ns.storescu(node.port, files, tls=tls, timeout=60)
            assert r.returncode != 0, r.stdout
            ok, _ = ns.acknowledged(r.stdout + r.stderr)
            assert not ok
            after = ns.wait_until(
                lambda: [e for e in node.events() if e["event"] == "tls_refused"]
                [len(before):], 10, "the tls_refused line")
            assert len(after) == 1, after
            assert spooled(node.state_dir) == []
            with node.db() as con:
                assert con.execute("select count(*) from instances").fetchone()[0] == 0
            return after[0]

        assert "certificate" in refused(dcmtk_tls(pki, None))["reason"]  # no certificate
        assert "certificate" in refused(dcmtk_tls(pki, "intruder"))["reason"]  # rogue CA
        assert "not TLS" in refused(None)["reason"]  # plain DICOM to the TLS port
        assert not ns.echo(node.port)  # plain C-ECHO too

        r = ns.storescu(node.port, files, tls=dcmtk_tls(pki, "scanner"))
        ok, bad = ns.acknowledged(r.stdout + r.stderr)
        assert r.returncode == 0 and len(ok) == 3 and not bad, r.stdout + r.stderr
        series = str(pydicom.dcmread(files[0]).SeriesInstanceUID)
        sr = ns.sr_for(pacs, series, timeout=60, instances=3)
        assert sr.Modality == "SR"
        assoc = [e for e in node.events() if e["event"] == "association"]
        assert assoc and all(e["tls"] and e["tls"].startswith("TLSv1.") for e in assoc)
        # the PACS may hold the SR a moment before the node logs its answer
        ns.wait_until(lambda: any(e["event"] == "sent" for e in node.events()), 10,
                      "the sent line")
    finally:
        node.stop()
        pacs.stop()


def test_tls_options_are_checked_before_start(tmp_path, pki):
    from cossl_edge.node.tls import TlsFiles, client_context, server_context

    with pytest.raises(ValueError, match="--tls-cert and --tls-key"):
        server_context(TlsFiles(cert=pki["node"][0]))
    with pytest.raises(FileNotFoundError, match="missing.pem"):
        server_context(TlsFiles(pki["node"][0], pki["node"][1], tmp_path / "missing.pem"))
    with pytest.raises(ValueError, match="not a PEM certificate and its private key"):
        server_context(TlsFiles(pki["node"][0], pki["pacs"][1]))  # key of another cert
    with pytest.raises(ValueError, match="go together"):
        client_context(TlsFiles(cert=pki["node"][0], ca=pki["ca"][0]))


def test_plain_dicom_is_said_at_start():
    from cossl_edge.commands.serve import plain_warnings
    from cossl_edge.node.tls import TlsFiles

    assert any("plain DICOM (no TLS)" in w for w in plain_warnings(None, None, None))
    assert any("without --tls-ca" in w for w in plain_warnings(TlsFiles("c", "k"), None, None))
    full = TlsFiles("c", "k", "ca")
    assert plain_warnings(full, None, None) == []
    (w,) = plain_warnings(full, "PACS@h:1", None)
    assert "reports leave unencrypted" in w
    assert plain_warnings(full, "PACS@h:1", TlsFiles(ca="ca")) == []
