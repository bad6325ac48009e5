"""Clean a pile of fashion photos into a StyleGAN2-ADA training set (zip or folder).

Example:
  python dataset_tool.py --source photos/ --dest fashion256.zip --resolution 256 \\
      --metadata titles.csv --cond-attr garment --workers 2
  python dataset_tool.py --source photos/ --dest fashion256.zip --metadata titles.csv \\
      --cond-attr garment,fabric,colour,sleeve --multi-hot --derive-colour
"""
from __future__ import annotations

import sys

import click
from PIL import ImageColor

from fashion_data.attributes import VocabularyError
from fashion_data.framing import TRANSFORMS
from fashion_data.metadata import MetadataError
from fashion_data.pipeline import BuildOptions, build_dataset
from fashion_data.sources import SourceError
from fashion_data.writer import DestinationError
from stylegan2.shapes import parse_resolution
from toolkit import cli


def _parse_background(ctx, param, value):
    if value is None or value.lower() == "auto":
        return None
    try:
        return ImageColor.getrgb(value)[:3]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a colour; use 'auto', a name like 'white' or '#f0f0f0'") from None


def _parse_resolution(ctx, param, value):
    """A square side stays an int (as before); a portrait or landscape frame stays 'HEIGHTxWIDTH'."""
    try:
        height, width = parse_resolution(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return height if height == width else f"{height}x{width}"


def _parse_attrs(ctx, param, value):
    return tuple(a.strip() for a in value.replace("+", ",").split(",") if a.strip()) if value else ()


@cli.command()
@click.option("--source", required=True, type=click.Path(exists=True), help="Folder (searched recursively) or .zip of photos. Never modified.")
@click.option("--dest", required=True, type=click.Path(), help="Output: a path ending in .zip writes a zip, anything else a folder.")
@click.option("--resolution", default="256", show_default=True, callback=_parse_resolution,
              help="Output size: a power of two (square) or HEIGHTxWIDTH for portrait/landscape sets, e.g. 256x192 (3:4), 256x128.")
@click.option("--transform", type=click.Choice(TRANSFORMS), default="pad", show_default=True,
              help="pad: whole garment in frame on its backdrop colour; center-crop; center-crop-wide (2:1 band); resize (stretch).")
@click.option("--background", default="auto", show_default=True, callback=_parse_background,
              help="Padding/transparency colour: 'auto' (from each photo's border; white under transparency) or a colour.")
@click.option("--channels", type=click.Choice(["1", "3"]), default="3", show_default=True, help="3 = RGB, 1 = greyscale.")
@click.option("--min-size", type=int, default=None, help="Drop photos whose short side is smaller (default: half the frame's short side; 0 disables).")
@click.option("--max-aspect", type=float, default=4.0, show_default=True, help="Drop photos longer than this ratio (0 disables).")
@click.option("--max-pixels", type=int, default=100_000_000, show_default=True, help="Skip images whose header claims more pixels (decompression bombs; Pillow itself refuses above ~179 MP).")
@click.option("--max-file-mb", type=float, default=200.0, show_default=True, help="Skip files larger than this.")
@click.option("--exif-rotate/--no-exif-rotate", default=True, show_default=True, help="Apply EXIF orientation.")
@click.option("--dedupe/--no-dedupe", default=True, show_default=True, help="Drop exact duplicates (same decoded pixels).")
@click.option("--near-threshold", type=int, default=6, show_default=True, help="Near duplicates: at most this many of 64 perceptual-hash bits differ (-1 disables)...")
@click.option("--near-colour-tolerance", type=int, default=20, show_default=True,
              help="...and no cell of a 4x4 colour thumbnail differs by more than this (keeps other colourways).")
@click.option("--max-images", type=int, default=None, help="Stop after writing this many images.")
@click.option("--shuffle", is_flag=True, help="Process photos in a random (seeded) order instead of sorted paths, e.g. to sample with --max-images.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for --shuffle.")
@click.option("--metadata", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CSV/JSON/JSONL with a file-name column and titles/descriptions and/or attribute columns.")
@click.option("--metadata-file-column", default=None, help="Name of the file-name column (auto-detected: file, filename, image, path, url...).")
@click.option("--vocabulary", type=click.Path(exists=True, dir_okay=False), default=None, help="Attribute vocabulary YAML (default: the shipped fashion_data/vocabulary.yaml).")
@click.option("--cond-attr", default=None, callback=_parse_attrs,
              help="Attribute(s) that define the training class, e.g. 'garment' or 'garment,wearer' (or 'folder'); "
                   "several make one class per combination unless --multi-hot.")
@click.option("--multi-hot", is_flag=True,
              help="With several --cond-attr: one one-hot block per attribute (all zeros where unknown) instead of "
                   "one class per combination; dataset.json gets float label vectors and their layout.")
@click.option("--derive-colour", is_flag=True,
              help="Where the text names no colour, measure the garment's dominant colour on the photo (named with "
                   "the vocabulary's rgb: colours; marked 'derived' in attributes.jsonl).")
@click.option("--label-from-folder", is_flag=True, help="Use each photo's parent folder name as its class (raw name), and as a text hint for attributes.")
@click.option("--unlabelled", type=click.Choice(["drop", "unknown"]), default="drop", show_default=True,
              help="Photos without the --cond-attr value: drop them or put them in an 'unknown' class.")
@click.option("--exclude", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Text file of source-relative paths to leave out, one per line (e.g. photos held out for evaluation).")
@click.option("--png-compress-level", type=click.IntRange(0, 9), default=3, show_default=True,
              help="PNG zlib level: higher is smaller and slower.")
@click.option("--workers", type=click.IntRange(1, None), default=1, show_default=True, help="Parallel decode/resize processes.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --dest (only once the new one is complete).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def main(quiet, channels, **kwargs):
    """Clean photos into a StyleGAN2-ADA dataset: official layout (00000/img00000000.png + dataset.json),
    plus attributes.jsonl (attributes and a caption per image) and report.json (what happened to every file)."""
    options = BuildOptions(channels=int(channels), **kwargs)
    try:
        report = build_dataset(options, progress=not quiet)
    except (ValueError, SourceError, DestinationError, MetadataError, VocabularyError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(report.summary())
    click.echo(f"Wrote {options.dest} (details in its report.json).")
    if report.written == 0:
        click.echo("No image was usable: check the reasons above (e.g. lower --min-size, or --unlabelled unknown).", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
