"""``polyfuse encode``: write the latents of a manifest's records to an .npz file."""

from __future__ import annotations

from pathlib import Path

import click

from .main import cli
from .options import device_option, modalities_option, quiet_option


@cli.command("encode")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path), help="Folder written by 'polyfuse train'.")
@click.option("--manifest", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="JSONL or CSV manifest of records to encode.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .npz file (written atomically).")
@modalities_option("Encode from these fields only (fused). Default: every field of the model.")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1), help="Records per forward pass.")
@click.option("--skip-invalid", is_flag=True, help="Skip records whose files are missing or unreadable, reporting each one.")
@device_option()
@quiet_option()
def encode_command(model_dir, manifest, out, fields, batch_size, skip_invalid, device, quiet) -> None:
    """Encode every record of --manifest into the model's shared latent space.

    The .npz holds ids, labels, the fused posterior mean and log-variance of the
    requested fields, each field's own posterior mean (mean_FIELD) and a presence mask.
    """
    from ..encoding import encode_manifest
    from ..model import MultimodalVAE

    if out.suffix != ".npz":
        raise click.BadParameter(f"must end in .npz, got {out}", param_hint="--out")
    model = MultimodalVAE.from_pretrained(model_dir, device=device)
    output = encode_manifest(model, manifest, fields, batch_size=batch_size, skip_invalid=skip_invalid, progress=not quiet)
    output.save(out)
    for skipped in output.skipped:
        click.echo(f"skipped {skipped.id}: {skipped.error}", err=True)
    click.echo(f"Wrote {len(output.ids)} latents of dimension {output.mean.shape[1]} from {', '.join(output.fields)} to {out}")
