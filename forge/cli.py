"""The `forge` command line. User mistakes print one line per problem and exit with code 2."""

from __future__ import annotations

import io
import os
import sys
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Iterator

import click

from forge.errors import ForgeError, SpecError, environment_problem
from forge.judge import DEFAULT_CHUNK_SIZE

USER_ERROR = 2
ENVIRONMENT_ERROR = 1  # the machine (disk full, read-only, vanished folder), not the input
INTERRUPTED = 130  # 128 + SIGINT: what shells report for a command stopped by Ctrl-C
SHOWN_PROBLEMS = 50  # forge export-check lists this many problems, then counts them
TRAINING_FORMATS = ["llava", "sharegpt", "openai", "qwen", "qwen2.5", "webdataset", "parquet", "jsonl"]  # forge.export
QUERY_EXPORTS = [f for f in TRAINING_FORMATS if f != "parquet"]  # `forge query --format parquet` writes the result as is


def _user_errors(fn):
    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SpecError as exc:
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            sys.exit(USER_ERROR)
        except ForgeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(USER_ERROR)
        except Exception as exc:  # a full disk, a read-only or vanished folder: one line; anything else is a bug
            problem = environment_problem(exc)
            if problem is None:
                raise
            click.echo(f"error: {problem}", err=True)
            sys.exit(ENVIRONMENT_ERROR)

    return wrapper


def _interruptible(fn):
    """Ctrl-C stops a reading command (query, show, sample, stats) with one line and exit code 130, not a
    traceback: the engines are stopped and their spill files removed on the way out."""
    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            click.echo(f"interrupted: forge {click.get_current_context().info_name} stopped by Ctrl-C", err=True)
            sys.exit(INTERRUPTED)

    return wrapper


@contextmanager
def _progress_bar(label: str, total: int, unit: str) -> Iterator[click._termui_impl.ProgressBar]:
    """A progress bar on stderr; where stderr is not a terminal (logs, CI) click prints the label once."""
    with click.progressbar(length=total, label=f"{label} ({total} {unit})", file=sys.stderr, show_pos=True) as bar:
        yield bar


SPEC_ARG = click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
SEED_OPT = click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=None,
                        help="Seed for pair order, phrasing and synthetic scenes; overrides the spec's `seed`.")
DEVICE_OPT = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                          help="Where models run: auto picks CUDA when a GPU is visible (with --runner ray: when the cluster "
                               "has GPUs), bf16/fp16 there, else CPU.")
BATCH_OPT = click.option("--batch-size", type=click.IntRange(1, 4096), default=None,
                         help="Images per model batch; overrides the spec's perception batch_size.")
CONCURRENCY_OPT = click.option(
    "--concurrency", type=click.IntRange(1, 1024), default=None,
    help="Model workers per model (each takes one GPU when there are GPUs); overrides the spec's concurrency.")
PARAM_OPT = click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
                         help="Value for a $NAME parameter in the SQL (numbers become numbers); repeat for several.")
LIMIT_OPT = click.option("--limit", type=click.IntRange(min=1), default=None,
                         help="Use only the first N images of the source (quick trial runs).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="spatialforge")
def main() -> None:
    """forge: turn 2D images into verified spatial question-answer data.

    A spec (YAML) declares where images come from, how they are perceived, and which
    question families to ask. `forge build` compiles it into a lazy Daft plan and writes
    QA rows to a LanceDB table.
    """


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@_user_errors
def validate(specs: tuple[Path, ...]) -> None:
    """Check SPECS for mistakes without running anything; print one line per problem. An annotations
    source's label map is checked against the dataset's categories (read, streaming, from its file)."""
    from forge.spec.load import dataset_problems, load_spec

    problems: list[str] = []
    for path in specs:
        try:
            loaded = load_spec(path)
            found = dataset_problems(loaded)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        except ForgeError as exc:
            problems.append(str(exc))
            continue
        if found:
            problems.extend(found)
            continue
        families = ", ".join(f.name for f in loaded.spec.families)
        click.echo(f"{path}: ok (spec {loaded.spec.name}, hash {loaded.spec_hash}, source {loaded.spec.source.kind}, families: {families})")
    if problems:
        raise SpecError(problems)


CHUNK_OPT = click.option(
    "--chunk-size", type=click.IntRange(1, 10_000_000), default=DEFAULT_CHUNK_SIZE, show_default=True,
    help="Images judged together. Memory follows it (about 1 GiB at the default with every family), not the "
         "number of images; the table is the same whatever it is. An interrupted build resumes chunk by chunk.")


@main.command()
@SPEC_ARG
@SEED_OPT
@LIMIT_OPT
@DEVICE_OPT
@BATCH_OPT
@CONCURRENCY_OPT
@CHUNK_OPT
@_user_errors
def explain(spec: Path, seed: int | None, limit: int | None, device: str, batch_size: int | None,
            concurrency: int | None, chunk_size: int) -> None:
    """Print what SPEC compiles to, without running it: the perception plan (Daft) and what
    judging does to each chunk of images (Polars), family by family.

    For model perception this is the cold-cache plan; a build runs models only for images
    missing from the perception cache.
    """
    from forge.judge.chunk import Judge
    from forge.perception.perceivers import perceiver_for
    from forge.perception.tasks import RunOptions
    from forge.spec.load import load_spec

    loaded = load_spec(spec)
    seed = loaded.spec.seed if seed is None else seed
    perceiver = perceiver_for(loaded, seed, limit, RunOptions(device, batch_size, concurrency=concurrency))
    if perceiver is None:
        click.echo(f"== Perception: records read from {loaded.resolve(loaded.spec.source.path)} ==")
    else:
        for name, plan in perceiver.plans():
            buffer = io.StringIO()
            plan.explain(show_all=True, file=buffer)
            click.echo(f"== Perception: {name} (Daft plan) ==\n{buffer.getvalue()}")
    click.echo("== Judging ==")
    for line in Judge(loaded, seed).describe(chunk_size):
        click.echo(line)


@main.command()
@SPEC_ARG
@click.option("--db", type=click.Path(file_okay=False, path_type=Path), default=Path("forge.lancedb"),
              show_default=True, help="LanceDB database folder to write the `qa` table into (created if missing).")
@LIMIT_OPT
@SEED_OPT
@DEVICE_OPT
@BATCH_OPT
@CONCURRENCY_OPT
@click.option("--no-cache", is_flag=True, help="Run the models even for images already in the perception cache, replacing their cached outputs.")
@click.option("--offline", is_flag=True,
              help="Never download a model: a hub id must already be in the Hugging Face cache (as HF_HUB_OFFLINE=1). "
                   "Without it, a hub id not yet cached is downloaded on first use.")
@click.option("--runner", type=click.Choice(["native", "ray"]), default="native", show_default=True,
              help="native: Daft's local engine on this machine. ray: the same plan on Daft's Ray runner, "
                   "a local Ray on this machine's cores unless --address names a cluster.")
@CHUNK_OPT
@click.option("--no-resume", is_flag=True,
              help="Start over instead of reusing the chunks an interrupted run of the same build finished.")
@click.option("--address", default=None, metavar="ADDR",
              help="Ray cluster to run on with --runner ray: `auto` (the cluster this machine belongs to), "
                   "HOST:6379, or ray://HOST:10001. On several nodes put --db on a filesystem every node mounts "
                   "(workers read the perception cache from it).")
@_user_errors
def build(spec: Path, db: Path, limit: int | None, seed: int | None, device: str, batch_size: int | None,
          no_cache: bool, concurrency: int | None, runner: str, address: str | None, chunk_size: int,
          no_resume: bool, offline: bool) -> None:
    """Run SPEC: perceive images, relate and verify objects, write QA rows to --db.

    Images flow through judging a chunk at a time and the rows become visible in one commit at
    the end, replacing the spec's previous build (readers see the old build or the new one, never a
    mix). A build that dies resumes: run the same command again.
    """
    from forge.build import run_build
    from forge.perception.tasks import RunOptions
    from forge.runner import model_device, use_runner
    from forge.spec.load import load_spec

    os.environ.setdefault("DAFT_PROGRESS_BAR", "0")  # forge draws its own bars; set 1 to see Daft's per-operator bars
    os.environ.setdefault("DAFT_SHOW_QUERY_ID", "0")
    loaded = load_spec(spec)
    where = use_runner(runner, address)
    if runner != "native":
        click.echo(f"running on the {where}", err=True)
    options = RunOptions(device=model_device(device, runner), batch_size=batch_size, use_cache=not no_cache,
                         concurrency=concurrency, offline=offline)
    report = run_build(loaded, db, seed=seed, limit=limit, echo=lambda m: click.echo(m, err=True),
                       options=options, progress=_progress_bar, chunk_size=chunk_size, resume=not no_resume)
    for line in report.lines():
        click.echo(line)


@main.command()
@SPEC_ARG
@click.option("--truth", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Ground-truth folder: instances.json (COCO boxes; `segmentation` masks where there are), images/ and "
                   "depth/ (<image stem>.png in millimetres or .npy in metres).")
@click.option("--truth-depth-kind", type=click.Choice(["metric", "relative"]), default="metric", show_default=True,
              help="What the truth depth maps hold.")
@click.option("--boxes", type=click.Choice(["perceived", "truth"]), default="perceived", show_default=True,
              help="perceived: the spec's detector finds the objects (errors include its misses and mislabels); "
                   "truth: the true boxes with the spec's depth model (measures depth alone; models perception only).")
@click.option("--target", type=click.FloatRange(0, 1, min_open=True), default=0.01, show_default=True,
              help="Largest share of kept answers that may be wrong; the proposed min_margin is the smallest that meets it.")
@click.option("--min-kept", type=click.IntRange(1), default=30, show_default=True,
              help="A proposal must keep at least this many answers (fewer say too little about the error).")
@click.option("--match-iou", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="A perceived object is a true one when their boxes overlap at least this much, with the same label "
                   "[default: 0.5].")
@click.option("--db", type=click.Path(file_okay=False, path_type=Path), default=Path("forge.lancedb"), show_default=True,
              help="Database whose perception cache the models' outputs go into (and come from, when cached).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("calibration"), show_default=True,
              help="Folder for calibration.csv (every family's curve) and calibration.png (the plot).")
@DEVICE_OPT
@BATCH_OPT
@_user_errors
def calibrate(spec: Path, truth: Path, truth_depth_kind: str, boxes: str, target: float, min_kept: int,
              match_iou: float | None, db: Path, out: Path, device: str, batch_size: int | None) -> None:
    """Measure how often SPEC's kept answers are wrong against ground truth, for every min_margin,
    and propose the smallest margin per family whose error is at most --target (YAML to paste).

    The spec's own perception runs on the truth images; each perceived object is matched to a true
    one, and every candidate that passes the spec's other rules is judged from perception and from
    the truth. An answer is wrong when it names an object that is not there or the truth decides it
    the other way.
    """
    from forge.calibrate import MATCH_IOU, TruthSet, calibrate as run, write_csv, write_png
    from forge.perception.tasks import RunOptions
    from forge.spec.load import load_spec

    loaded = load_spec(spec)
    result = run(loaded, TruthSet.open(truth, truth_depth_kind), db, target, boxes, match_iou or MATCH_IOU, min_kept,
                 RunOptions(device=device, batch_size=batch_size))
    out.mkdir(parents=True, exist_ok=True)
    write_csv(result, out / "calibration.csv")
    write_png(result, out / "calibration.png")
    for line in result.lines():
        click.echo(line)
    click.echo(f"curves -> {out / 'calibration.csv'}, plot -> {out / 'calibration.png'}", err=True)


@main.command()
@click.option("--db", type=click.Path(file_okay=False, path_type=Path), default=Path("forge.lancedb"),
              show_default=True, help="LanceDB database folder holding the QA table.")
@click.option("--table", default="qa", show_default=True, help="QA table to read (a spec's output.table).")
@click.option("--family", default=None, help="Show only this question family, e.g. depth_order.")
@click.option("--where", default=None, metavar="SQL",
              help="Extra SQL filter on qa columns, e.g. \"margin < 0.1\" or \"answer_type = 'yes_no'\"; $NAME "
                   "placeholders take --param values.")
@PARAM_OPT
@click.option("--n", "count", type=click.IntRange(1, 10_000), default=24, show_default=True,
              help="Rows to render (a stable pick: the first N in qa_id order, which is a content hash).")
@click.option("--depth", is_flag=True, help="Colour the image by the depth the build used (near bright, far dark).")
@click.option("--masks/--no-masks", default=True, show_default=True,
              help="Fill each named object's mask translucent in its box colour, where the build had masks (synthetic "
                   "scenes, COCO `segmentation`, perception.segmentation): the pixels its depth was read from.")
@click.option("--size", type=click.IntRange(64, 4096), default=480, show_default=True,
              help="Long side of each rendered image in pixels.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="preview.html: one self-contained page with thumbnails; any other path: a folder of PNGs "
                   "(image with boxes above a caption).")
@_user_errors
@_interruptible
def show(db: Path, table: str, family: str | None, where: str | None, params: tuple[str, ...], count: int,
         depth: bool, masks: bool, size: int, out: Path) -> None:
    """Render QA rows onto their images: boxes with labels (a red, b blue, c green, ...), each
    object's mask, question, answer, margin, and optionally the depth map as a colour overlay."""
    from forge.query import parse_params
    from forge.show import render, select_rows, write_html, write_pngs

    rows = select_rows(db, table, family, where, count, parse_params(params))
    with _progress_bar("rendering", len(rows), "rows") as bar:
        shown = render(rows, db, depth, size, on_row=lambda: bar.update(1), masks=masks)
    missing = [item.depth_missing for item in shown if item.depth_missing]
    if missing:
        click.echo(f"warning: {len(missing)} of {len(shown)} rows have no depth overlay, e.g. {missing[0]}", err=True)
    if out.suffix.lower() in (".html", ".htm"):
        write_html(shown, out, f"forge show: {db} ({table})")
        click.echo(f"{len(shown)} rows -> {out}")
    else:
        paths = write_pngs(shown, out)
        click.echo(f"{len(paths)} PNG files -> {out}/")


MAX_TIMEOUT_S = 1_000_000  # 11.6 days; thread waits overflow near 1e10 s; no --timeout: no limit


def _seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A positive, finite number of seconds (click's FloatRange lets nan through)."""
    if value is not None and not 0 < value <= MAX_TIMEOUT_S:
        raise click.BadParameter(f"{value:g} is not a number of seconds in (0, {MAX_TIMEOUT_S}]")
    return value


@main.command()
@click.argument("query")
@click.option("--db", type=click.Path(file_okay=False, path_type=Path), default=Path("forge.lancedb"),
              show_default=True, help="LanceDB database folder; its tables (qa, builds, errors, ...) are visible by name.")
@PARAM_OPT
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json", "parquet", *QUERY_EXPORTS]),
              default="table", show_default=True,
              help="Output format; nested columns become JSON text in table and csv. The training formats "
                   "(as in `forge sample`) need --out (an export folder) and QA rows (SELECT * FROM qa ...); parquet "
                   "writes the result as it is.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Write the result to this file instead of printing it (required for parquet); a folder for the "
                   "training formats.")
@click.option("--engine", type=click.Choice(["auto", "duckdb", "lance"]), default="auto", show_default=True,
              help="auto: plain `SELECT cols FROM t [WHERE ...] LIMIT n` slices scan Lance directly, all else DuckDB.")
@click.option("--timeout", type=float, callback=_seconds, default=None, metavar="SECONDS",
              help="Stop the query after this many seconds, at most 1000000 (one line, exit code 2) [default: no "
                   "limit]. Ctrl-C stops any query at once (exit code 130).")
@_user_errors
@_interruptible
def query(query: str, db: Path, params: tuple[str, ...], fmt: str, out: Path | None, engine: str,
          timeout: float | None) -> None:
    """Run SQL (QUERY text or a .sql file, e.g. queries/per_family_counts.sql) over a forge database."""
    from forge.query import parse_params, read_query, run_query, write_result

    result = run_query(db, read_query(query), parse_params(params), engine=engine, timeout=timeout)
    if fmt in QUERY_EXPORTS:
        from forge.export import export

        if out is None:
            raise ForgeError(f"--format {fmt} needs --out (an export folder)")
        _echo_export(export(result, fmt, out))
        return
    text = write_result(result, fmt, out)
    if text is not None:
        click.echo(text)
    else:
        click.echo(f"{result.num_rows} rows -> {out}", err=True)


def _pairs(values: tuple[str, ...], option: str, kind: type) -> dict:
    out = {}
    for value in values:
        name, sep, number = value.partition("=")
        try:
            out[name] = kind(number)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ForgeError(f"{option} {value!r}: write NAME={kind.__name__.upper()}, e.g. {option} depth_order=2")
    return out


def _echo_export(result) -> None:
    click.echo(f"{result.rows} QA rows in {result.samples} samples, {result.images} images -> {result.folder}/ "
               f"({', '.join(p.name for p in result.files[:3])}{' ...' if len(result.files) > 3 else ''}); "
               f"check it with: forge export-check {result.folder}", err=True)


@main.command()
@click.option("--db", type=click.Path(file_okay=False, path_type=Path), default=Path("forge.lancedb"),
              show_default=True, help="LanceDB database folder to sample from.")
@click.option("--mix", "mix_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="YAML mix: n, families {name: weight} or quotas {name: count}, stratify, where, split, splits.")
@click.option("--family", "families", multiple=True, metavar="NAME=WEIGHT", help="Family weight (needs --n); repeatable.")
@click.option("--quota", "quotas", multiple=True, metavar="NAME=COUNT", help="Exact rows for a family; repeatable.")
@click.option("--n", "n", type=click.IntRange(min=1), default=None,
              help="Total rows, shared by the family weights; alone, shared equally by every family in the table.")
@click.option("--stratify", default=None, help="Comma-separated columns whose value combinations get equal shares, e.g. answer,template_id.")
@click.option("--where", default=None,
              help="SQL filter on qa rows, e.g. \"margin > 0.2\"; $NAME placeholders take --param values.")
@PARAM_OPT
@click.option("--split", type=click.Choice(["train", "val", "test"]), default=None,
              help="Only rows of this split (by image: 90/5/5 unless the mix file says otherwise).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the row order inside each cell.")
@click.option("--format", "fmt", type=click.Choice(TRAINING_FORMATS), default="llava", show_default=True,
              help="llava: LLaVA 1.5 JSON; sharegpt: LLaMA-Factory (with dataset_info.json); openai: chat JSONL with "
                   "base64 image_url parts; qwen: Qwen-VL (<ref>/<box> on 0-999); qwen2.5: Qwen2.5-VL (bbox_2d JSON in "
                   "pixels); webdataset: tar shards, one sample per image; parquet: Hugging Face datasets with image "
                   "bytes; jsonl: the QA rows.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Export folder: the annotation file(s), images/ and export.json (required unless --dry-run).")
@click.option("--images", "images", type=click.Choice(["copy", "link", "none"]), default="copy", show_default=True,
              help="How images reach images/: copy, link (symlinks to the originals; converted images are written), or "
                   "none (reference the originals in place; refused for images a trainer cannot open as they are).")
@click.option("--image-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write image paths relative to this folder instead of the export folder (e.g. the trainer's image_folder).")
@click.option("--turns", type=click.IntRange(1, 32), default=1, show_default=True,
              help="Questions about one image grouped into one conversation, at most this many (multi-turn training).")
@click.option("--qwen-max-pixels", type=click.IntRange(min=784), default=28 * 28 * 576, show_default=True,
              help="qwen2.5: the max_pixels your Qwen2.5-VL training uses; boxes are pixels of the image its processor "
                   "resizes to within it.")
@click.option("--qwen-min-pixels", type=click.IntRange(min=784), default=28 * 28 * 16, show_default=True,
              help="qwen2.5: the min_pixels your Qwen2.5-VL training uses.")
@click.option("--openai-images", type=click.Choice(["base64", "path"]), default="base64", show_default=True,
              help="openai: each image inline as a base64 data URL, or as its path in the export folder.")
@click.option("--dry-run", is_flag=True, help="Choose the rows and print the mixture (rows per family, split and answer, "
                                               "then what each cell takes) without reading them or writing anything.")
@_user_errors
@_interruptible
def sample(db: Path, mix_file: Path | None, families: tuple[str, ...], quotas: tuple[str, ...], n: int | None,
           stratify: str | None, where: str | None, params: tuple[str, ...], split: str | None, seed: int, fmt: str,
           out: Path | None, images: str, image_root: Path | None, turns: int, qwen_max_pixels: int, qwen_min_pixels: int,
           openai_images: str, dry_run: bool) -> None:
    """Draw a balanced, deterministic training mixture from the qa table and export it as a folder a
    trainer can use as it is."""
    from forge.query import parse_params
    from forge.sample import Mix, choose, load_mix, mixture_lines

    if not dry_run:
        if out is None:
            raise ForgeError("--out DIR is required (the export folder), or --dry-run to see the mixture only")
        from forge.export import check_out

        check_out(out)  # before drawing: a refused folder costs nothing
    mix = load_mix(mix_file) if mix_file else Mix()
    mix.weights.update(_pairs(families, "--family", float))
    mix.quotas.update(_pairs(quotas, "--quota", int))
    mix.n = n if n is not None else mix.n
    mix.stratify = stratify.split(",") if stratify else mix.stratify
    mix.where = where or mix.where
    mix.params = parse_params(params)
    mix.split = split or mix.split
    choice = choose(db, mix, seed, extra=("answer",) if dry_run else (), progress=_progress_bar)
    for line in choice.report.lines():
        click.echo(line, err=True)
    if dry_run:
        click.echo("\n".join([*mixture_lines(choice.chosen), "", *choice.report.cell_lines()]))
        return
    table = choice.read(_progress_bar)
    from forge.export import export
    from forge.export.samples import ExportOptions

    assert out is not None
    options = ExportOptions(qwen_min_pixels=qwen_min_pixels, qwen_max_pixels=qwen_max_pixels,
                            openai_inline=openai_images == "base64")
    _echo_export(export(table, fmt, out, images=images, image_root=image_root, turns=turns, options=options))


@main.command("export-check")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
@_user_errors
def export_check(folder: Path) -> None:
    """Read an export the way its trainer will: the format's own files, every picture decoded (files, data
    URLs, bytes inside Parquet and tar shards) at the size the samples state, every answer equal to the
    index's in the format's notation (boxes too), boxes inside their pictures, left/right against the boxes."""
    from forge.export.check import check_export

    report = check_export(folder)
    for problem in report.problems[:SHOWN_PROBLEMS]:
        click.echo(f"problem: {problem}", err=True)
    if report.problems:
        shown = f" (the first {SHOWN_PROBLEMS} above)" if len(report.problems) > SHOWN_PROBLEMS else ""
        count = f"{len(report.problems)} problem{'s' if len(report.problems) > 1 else ''}"
        raise ForgeError(f"{folder}: {count}{shown} in {report.rows} rows, {report.samples} "
                         f"samples and {report.images} images")
    click.echo(f"{folder}: ok ({report.rows} rows, {report.samples} samples, {report.images} images)")


@main.command()
@click.option("--db", type=click.Path(file_okay=False, path_type=Path), default=Path("forge.lancedb"),
              show_default=True, help="LanceDB database folder to describe.")
@_user_errors
@_interruptible
def stats(db: Path) -> None:
    """Rows per family, answer types, answer positions and answers, and the last build's funnel."""
    from forge.stats import stats_lines

    for line in stats_lines(db):
        click.echo(line)


@main.group()
def models() -> None:
    """Manage model weights for machines that run offline."""


@models.command("pull")
@click.argument("model_ids", nargs=-1, required=True)
@click.option("--to", "to", type=click.Path(file_okay=False, path_type=Path), default=Path("models"), show_default=True,
              help="Folder to download into; each model lands in <to>/<org>__<name>.")
@_user_errors
def pull(model_ids: tuple[str, ...], to: Path) -> None:
    """Download MODEL_IDS (Hugging Face ids) so specs can name them as local folders offline."""
    from udfs.loading import pull_model

    for model in model_ids:
        click.echo(f"{model} -> {pull_model(model, to)}")


if __name__ == "__main__":
    main()
