"""`cossl-edge dicom scan DIR`: what a DICOM folder holds, before training on it."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cossl_edge.commands.common import user_errors

dicom_app = typer.Typer(help="Inspect DICOM folders.", no_args_is_help=True)


@dicom_app.command("scan", no_args_is_help=True)
def scan_command(
    folder: Path = typer.Argument(..., help="Folder to scan, recursively (files with or "
                                  "without the .dcm suffix)."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the full inventory "
                                         "here: every file once, by salted id."),
    decode: bool = typer.Option(False, help="Decode the first frame of every image to prove "
                                "it decodes (slower); by default decodability is judged from "
                                "the header and the installed decoders."),
    paths: bool = typer.Option(False, help="Add each file's relative path to the JSON. Paths "
                               "often hold patient names: keep such a file on site."),
    quiet: bool = typer.Option(False, help="No progress bar and no table; the JSON only."),
) -> None:
    """Inventory: series, modalities, transfer syntaxes, image sizes, decodable or not and
    why, and which patient-identifying tags are present (names only, never values)."""
    with user_errors():
        from cossl_edge.dicom.inventory import scan

        inventory = scan(folder, decode=decode, with_paths=paths, progress=not quiet)
        if json_out is not None:
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(inventory, indent=1))
        if not quiet:
            _print_report(inventory)


def _print_report(inventory: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="Series")
    for col in ("series", "modality", "files", "frames", "sizes", "transfer syntax",
                "undecodable"):
        table.add_column(col)
    for s in inventory["series"]:
        table.add_row(s["series"], s["modality"], str(s["files"]), str(s["frames"]),
                      ", ".join(s["sizes"]), ", ".join(s["transfer_syntaxes"]),
                      str(s["undecodable"]))
    console.print(table)
    summary = inventory["summary"]
    console.print(f"{summary['files']} files: {summary['images']} images "
                  f"({summary['frames']} frames, {summary['decodable']} decodable), "
                  f"{summary['skipped']} skipped, {summary['not_dicom']} not DICOM")
    for title, counts in (("Skipped", summary["skip_reasons"]),
                          ("Not decodable", summary["undecodable_reasons"]),
                          ("Patient-identifying tags present", summary["phi_tags_present"])):
        if counts:
            console.print(f"[bold]{title}[/bold]")
            for reason, n in counts.items():
                console.print(f"  {n:6d}  {reason}")
    if summary["burned_in_annotation"]:
        console.print(f"[yellow]{summary['burned_in_annotation']} images declare burned-in "
                      "annotation (text in the pixels may identify the patient)[/yellow]")


def register(app: typer.Typer) -> None:
    app.add_typer(dicom_app, name="dicom")
