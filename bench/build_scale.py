"""Builds at dataset scale: forge against a per-row Python loop and a hand-written Polars query.

Fabricates perception records for N images with a fixed seed (3-12 objects per image, labels from
a 40-word vocabulary with Zipf-like repeats, boxes that overlap and cross the border, detector-like
scores, metric depth, a camera and gravity per image, objects lifted to 3D) as Parquet, then measures, each in its own process (wall time, peak RSS):

(a) `forge build` of specs/depth_order.yaml from those records, and of every family in
    specs/families/ together (one spec holding every family);
(b) the same depth_order logic as a straightforward per-row Python program: loops over images and
    pairs, the same rules, margins, naming order, templates, balancing and row ids;
(c) the same logic as one hand-written Polars query.
(b) and (c) write Parquet; the script checks that (a), (b) and (c) made the same rows.

Usage: python bench/build_scale.py [--images 100000 1000000] [--chunk-size N] [--data DIR] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
VOCABULARY = ["person", "chair", "table", "car", "dog", "cat", "bottle", "cup", "bicycle", "potted plant", "tv",
              "laptop", "couch", "bed", "book", "clock", "vase", "bench", "umbrella", "backpack", "bowl", "sink",
              "oven", "truck", "bus", "horse", "bird", "kite", "lamp", "door", "window", "shelf", "box", "bag",
              "shoe", "hat", "plate", "spoon", "fork", "knife"]
GROUP = 50_000  # images fabricated at a time
ROW_GROUP = 10_000  # rows per Parquet row group, as Parquet writers commonly make them


# ---- fabricated perception records -------------------------------------------------------------

def fabricate_group(start: int, count: int, seed: int):
    """Records of images start..start+count, the same whatever else is fabricated."""
    import pyarrow as pa

    rng = np.random.default_rng([seed, start])
    per_image = rng.integers(3, 13, count)
    total = int(per_image.sum())
    weights = 1.0 / np.arange(1, len(VOCABULARY) + 1) ** 0.8
    labels = rng.choice(len(VOCABULARY), total, p=weights / weights.sum())
    cx, cy = rng.random(total), rng.random(total)
    w = np.exp(rng.uniform(np.log(0.04), np.log(0.45), total))
    h = w * np.exp(rng.normal(0.25, 0.35, total))
    x1, x2 = np.clip(cx - w / 2, 0, 1), np.clip(cx + w / 2, 0, 1)
    y1, y2 = np.clip(cy - h / 2, 0, 1), np.clip(cy + h / 2, 0, 1)
    offsets = np.concatenate([[0], np.cumsum(per_image)]).astype(np.int32)
    no_value = pa.nulls(total, pa.float64())
    depth = np.exp(rng.uniform(np.log(0.8), np.log(25.0), total))
    # a camera per image (a 40-100 degree lens, looking down 0-20 degrees, 1.5 m up) and the objects lifted
    # with it, as perception records them: centroids at the box centres' depth, extents from the boxes
    fov = rng.uniform(40.0, 100.0, count)
    pitch = np.radians(rng.uniform(0.0, 20.0, count))
    focal = 640 / (2 * np.tan(np.radians(fov) / 2))
    up = np.stack([np.zeros(count), -np.cos(pitch), -np.sin(pitch)], axis=1)
    f, u = np.repeat(focal, per_image), np.repeat(up, per_image, axis=0)
    centre = np.stack([(cx - 0.5) * 640 * depth / f, (cy - 0.5) * 480 * depth / f, depth], axis=1)
    along_axis = np.stack([np.zeros(total), -u[:, 2] * u[:, 1], 1 - u[:, 2] ** 2], axis=1)
    along_axis /= np.linalg.norm(along_axis, axis=1, keepdims=True)
    elevation = (centre * u).sum(axis=1) + 1.5
    height3d = (y2 - y1) * 480 * depth / f
    lifted = {"x3d": centre[:, 0], "y3d": centre[:, 1], "z3d": centre[:, 2], "across": centre[:, 0],
              "along": (centre * along_axis).sum(axis=1), "elevation": elevation, "width3d": (x2 - x1) * 640 * depth / f,
              "height3d": height3d, "bottom": elevation - height3d / 2, "top": elevation + height3d / 2}
    objects = pa.StructArray.from_arrays(
        [pa.array(np.arange(total) - np.repeat(offsets[:-1], per_image)),
         pa.array(np.array(VOCABULARY, dtype=object)[labels], pa.string()),
         pa.array(rng.uniform(0.3, 1.0, total)), pa.array(x1), pa.array(y1), pa.array(x2), pa.array(y2),
         pa.array(depth), pa.array(rng.uniform(0, 0.4, total)), no_value, no_value, no_value,
         *[pa.array(values) for values in lifted.values()], pa.array(np.full(total, 200, np.int64))],
        names=["idx", "label", "score", "x1", "y1", "x2", "y2", "depth", "depth_spread", "depth_check", "flip_depth",
               "flip_cx", *lifted, "points3d"])
    ids = range(start, start + count)
    return pa.table({
        "image_id": [hashlib.sha256(f"{seed}/{i}".encode()).hexdigest()[:32] for i in ids],
        "image_uri": [f"s3://photos/{i // 1000:05d}/{i:09d}.jpg" for i in ids],
        "width": pa.array(np.full(count, 640), pa.int64()),
        "height": pa.array(np.full(count, 480), pa.int64()),
        "depth_kind": ["metric"] * count,
        "perception": ["fabricated"] * count,
        "error": pa.nulls(count, pa.string()),
        "fx": pa.array(focal), "fy": pa.array(focal), "cx": pa.array(np.full(count, 320.0)),
        "cy": pa.array(np.full(count, 240.0)), "up_x": pa.array(up[:, 0]), "up_y": pa.array(up[:, 1]),
        "up_z": pa.array(up[:, 2]), "camera_height": pa.array(np.full(count, 1.5)),
        "gravity_source": ["floor_fit"] * count,
        "objects": pa.ListArray.from_arrays(pa.array(offsets), objects),
    })


def fabricate(path: Path, images: int, seed: int = 0, row_group: int = ROW_GROUP) -> Path:
    import pyarrow.parquet as pq

    if path.exists():
        return path
    tmp = path.with_suffix(".tmp")
    writer = None
    for start in range(0, images, GROUP):
        table = fabricate_group(start, min(GROUP, images - start), seed)
        writer = writer or pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table, row_group_size=row_group)
    writer.close()
    tmp.rename(path)
    return path


# ---- the depth_order logic, as forge's spec defines it -------------------------------------------

M64 = (1 << 64) - 1
GOLDEN, M1, M2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def salt(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=8).digest(), "little")


def mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * M1) & M64
    z = ((z ^ (z >> 27)) * M2) & M64
    return z ^ (z >> 31)


def stable_hash(values: tuple[int, ...], seed_salt: int) -> int:
    h = seed_salt
    for v in values:
        h = mix(h ^ (((v & M64) + GOLDEN) & M64))
    return h


def depth_order_logic(spec_path: Path) -> dict:
    import yaml

    spec = yaml.safe_load(spec_path.read_text())
    family = spec["families"][0]
    templates = [(form, text) for form in family["questions"] for text in form["templates"]]
    return {"verify": spec["verify"], "min_margin": family["min_margin"], "templates": templates,
            "max_ratio": family.get("balance", {}).get("max_ratio", 1.1), "name": family["name"],
            "spec_name": spec["name"], "seed": spec.get("seed", 0)}


def _fill(text: str, a: str, b: str) -> str:
    return text.replace("{a}", a).replace("{b}", b)


def per_row(records: Path, out: Path, spec_path: Path, spec_hash: str) -> None:
    """(b): loops over images, objects and pairs; every kept row in memory, then balanced."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    logic = depth_order_logic(spec_path)
    v, seed, name = logic["verify"], logic["seed"], logic["name"]
    order_salt, template_salt = salt("tuple-order", 2, seed), salt("template", name, seed)
    balance_salt, qa_salt = salt("balance", name, seed), salt("qa", spec_hash, name)
    rows = []
    for batch in pq.ParquetFile(records).iter_batches(batch_size=10_000):
        for image in batch.to_pylist():
            if image["error"] is not None:
                continue
            key = int(image["image_id"][:16], 16)
            width, height = image["width"], image["height"]
            labels = [o["label"] for o in image["objects"]]
            usable = []
            for i, o in enumerate(image["objects"]):
                area = (o["x2"] - o["x1"]) * (o["y2"] - o["y1"])
                truncated = (o["x1"] * width < 1 or o["y1"] * height < 1 or (1 - o["x2"]) * width < 1
                             or (1 - o["y2"]) * height < 1)
                if (o["score"] >= v["min_score"] and area >= v["min_area"] and area <= v["max_area"] and not truncated
                        and labels.count(o["label"]) == 1):
                    usable.append((i, o))
            for p, (i, first) in enumerate(usable):
                for j, second in usable[p + 1:]:
                    a, b = (first, second) if stable_hash((key, i, j), order_salt) % 2 == 0 else (second, first)
                    ai, bi = (i, j) if a is first else (j, i)
                    if a["depth"] is None or b["depth"] is None:
                        continue
                    margin = abs(a["depth"] - b["depth"]) / min(a["depth"], b["depth"])
                    if not margin >= logic["min_margin"]:
                        continue
                    holds = a["depth"] < b["depth"]
                    pick = stable_hash((key, ai, bi), template_salt) % len(logic["templates"])
                    form, text = logic["templates"][pick]
                    answer = form["answer"]["if_true"] if holds else form["answer"]["if_false"]
                    rows.append({
                        "qa_id": str(stable_hash((key, ai, bi, pick), qa_salt)),
                        "image_id": image["image_id"], "image_uri": image["image_uri"],
                        "question": _fill(text, a["label"], b["label"]),
                        "answer": _fill(answer, a["label"], b["label"]),
                        "choices": [_fill(c, a["label"], b["label"]) for c in form["choices"]],
                        "objects": [{"label": o["label"], "box": [o["x1"], o["y1"], o["x2"], o["y2"]]} for o in (a, b)],
                        "margin": margin, "cell": form["choices"].index(answer),
                        "order": stable_hash((key, ai, bi, pick), balance_salt)})
    cells = {}
    for row in rows:
        cells.setdefault(row["cell"], []).append(row)
    sizes = sorted((len(c) for c in cells.values()), reverse=True)
    cap = math.ceil((sizes[1] if len(sizes) > 1 else 0) * logic["max_ratio"])
    kept = []
    for cell_rows in cells.values():
        kept += sorted(cell_rows, key=lambda r: (r["order"], r["qa_id"]))[:cap]
    for row in kept:
        del row["cell"], row["order"]
    pq.write_table(pa.Table.from_pylist(kept), out)


def polars_query(records: Path, out: Path, spec_path: Path, spec_hash: str) -> None:
    """(c): the same logic as one hand-written Polars query, with the fastest constructs we measured
    (int_ranges for object positions, a categorical window for label counts, arrays for the object lists)."""
    import polars as pl

    logic = depth_order_logic(spec_path)
    v, seed, name = logic["verify"], logic["seed"], logic["name"]
    U = pl.UInt64

    def hashed(frame: pl.LazyFrame, column: str, values: list[str], seed_salt: int) -> pl.LazyFrame:
        frame = frame.with_columns(pl.lit(seed_salt, U).alias(column))
        for value in values:
            z = pl.col(column) ^ (pl.col(value).cast(U, wrap_numerical=True) + pl.lit(GOLDEN, U))
            frame = frame.with_columns(z.alias(column))
            for shift, factor in ((30, M1), (27, M2)):
                z = pl.col(column)
                frame = frame.with_columns(((z ^ (z // pl.lit(1 << shift, U))) * pl.lit(factor, U)).alias(column))
            frame = frame.with_columns((pl.col(column) ^ (pl.col(column) // pl.lit(1 << 31, U))).alias(column))
        return frame

    c = pl.col
    images = pl.scan_parquet(records).filter(c("error").is_null()).with_row_index("img").with_columns(
        key=c("image_id").str.slice(0, 16).str.to_integer(base=16, dtype=U))
    objects = (images.select("img", "key", "width", "height", pl.int_ranges(0, c("objects").list.len()).alias("i"),
                             "objects").explode("i", "objects").unnest("objects"))
    area = (c("x2") - c("x1")) * (c("y2") - c("y1"))
    truncated = ((c("x1") * c("width") < 1) | (c("y1") * c("height") < 1) | ((1 - c("x2")) * c("width") < 1)
                 | ((1 - c("y2")) * c("height") < 1))
    same_label = c("img").cast(U) * (1 << 32) + c("label").cast(pl.Categorical).to_physical().cast(U)
    usable = objects.filter((c("score") >= v["min_score"]) & (area >= v["min_area"]) & (area <= v["max_area"])
                            & ~truncated & (pl.len().over(same_label) == 1))
    side = usable.select("img", "key", "i", "label", "depth", "x1", "y1", "x2", "y2")
    pairs = side.join(side.drop("key"), on="img", suffix="_2").filter(c("i") < c("i_2"))
    pairs = hashed(pairs, "h", ["key", "i", "i_2"], salt("tuple-order", 2, seed))
    swap = (c("h") % 2) == 1
    fields = ["i", "label", "depth", "x1", "y1", "x2", "y2"]
    pairs = pairs.select("img", "key", *[pl.when(swap).then(c(f"{f}_2")).otherwise(c(f)).alias(f"a_{f}") for f in fields],
                         *[pl.when(swap).then(c(f)).otherwise(c(f"{f}_2")).alias(f"b_{f}") for f in fields])
    margin = (c("a_depth") - c("b_depth")).abs() / pl.min_horizontal("a_depth", "b_depth")
    pairs = pairs.with_columns(margin=margin, holds=c("a_depth") < c("b_depth")).filter(c("margin") >= logic["min_margin"])
    pairs = hashed(pairs, "pick", ["key", "a_i", "b_i"], salt("template", name, seed))
    pairs = pairs.with_columns(pick=(c("pick") % len(logic["templates"])).cast(pl.Int64))
    pairs = hashed(pairs, "order", ["key", "a_i", "b_i", "pick"], salt("balance", name, seed))
    pairs = hashed(pairs, "qa_id", ["key", "a_i", "b_i", "pick"], salt("qa", spec_hash, name))
    pairs = pairs.with_columns(qa_id=c("qa_id").cast(pl.String), cell=pl.when(c("holds")).then(0).otherwise(1)).collect()
    counted = pairs.group_by("cell").agg(n=pl.len()).sort("n", descending=True)["n"].to_list()
    cap = math.floor((counted[1] if len(counted) > 1 else 0) * logic["max_ratio"] + 1e-9)
    kept = pairs.filter(c("order").rank("ordinal").over("cell") <= cap)
    parts = []
    for pick, (form, text) in enumerate(logic["templates"]):
        def fill(template: str) -> pl.Expr:
            pieces, rest = [], template
            while "{" in rest:
                head, rest = rest.split("{", 1)
                placeholder, rest = rest.split("}", 1)
                pieces += [pl.lit(head), c(f"{placeholder}_label")]
            return pl.concat_str(pieces + [pl.lit(rest)])
        answer = pl.when(c("holds")).then(fill(form["answer"]["if_true"])).otherwise(fill(form["answer"]["if_false"]))
        members = [pl.struct(c(f"{s}_label").alias("label"),
                             pl.concat_arr([c(f"{s}_{k}") for k in ("x1", "y1", "x2", "y2")]).arr.to_list().alias("box"))
                   for s in "ab"]
        parts.append(kept.filter(c("pick") == pick).select(
            "qa_id", "img", question=fill(text), answer=answer, choices=pl.concat_list([fill(x) for x in form["choices"]]),
            objects=pl.concat_arr(members).arr.to_list(), margin="margin"))
    rows = pl.concat(parts).join(images.select("img", "image_id", "image_uri").collect(), on="img").drop("img")
    rows.write_parquet(out)


# ---- measuring ---------------------------------------------------------------------------------

def merged_families_spec(folder: Path, records: Path) -> Path:
    """Every family of specs/families/ in one spec, reading the records."""
    import yaml

    specs = [yaml.safe_load(p.read_text()) for p in sorted((REPO / "specs" / "families").glob("*.yaml"))]
    spec = dict(specs[0], name="every_family", description="every family of specs/families, built together")
    spec["families"] = [family for s in specs for family in s["families"]]
    spec["source"], spec["perception"] = {"kind": "records", "path": str(records)}, "records"
    path = folder / "every_family.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def records_spec(folder: Path, records: Path) -> Path:
    import yaml

    spec = yaml.safe_load((REPO / "specs" / "depth_order.yaml").read_text())
    spec["source"], spec["perception"] = {"kind": "records", "path": str(records)}, "records"
    path = folder / "depth_order_records.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def measure(command: list[str]) -> dict:
    """Run one measured child process; its wall seconds and the JSON it printed last."""
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return {"seconds": time.perf_counter() - start, **json.loads(done.stdout.strip().splitlines()[-1])}


def _peak_gib() -> float:
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 2**20


def run_one(kind: str, records: Path, out: Path, spec: Path, spec_hash: str, chunk_size: int | None) -> None:
    """In a child process: one of forge / per_row / polars; prints JSON with its peak RSS last.

    The clock starts once the libraries are imported, for all three alike.
    """
    import polars  # noqa: F401
    import pyarrow.parquet as pq

    from forge.build import run_build
    from forge.judge import DEFAULT_CHUNK_SIZE
    from forge.spec.load import load_spec

    start = time.perf_counter()
    if kind == "forge":
        report = run_build(load_spec(spec), out, echo=lambda _: None, chunk_size=chunk_size or DEFAULT_CHUNK_SIZE)
        result = {"rows": report.qa_rows, "stages": {s.name: round(s.seconds, 2) for s in report.stages.stages}}
    else:
        (per_row if kind == "per_row" else polars_query)(records, out, spec, spec_hash)
        result = {"rows": pq.read_metadata(out).num_rows}
    result.update(inner_s=time.perf_counter() - start, peak_gib=_peak_gib())
    print(json.dumps(result))


def same_rows(forge_db: Path, table_files: list[Path]) -> bool:
    import lancedb
    import pyarrow.parquet as pq

    columns = ["qa_id", "image_id", "image_uri", "question", "answer", "choices", "objects"]
    made = lancedb.connect(str(forge_db)).open_table("qa").to_arrow().select(columns).sort_by("qa_id")
    for path in table_files:
        other = pq.read_table(path).select(columns).sort_by("qa_id")
        if made.to_pylist() != other.to_pylist():
            return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--chunk-size", type=int, default=None, help="forge's --chunk-size (default: forge's)")
    parser.add_argument("--data", type=Path, default=None, help="keep fabricated records and outputs here")
    parser.add_argument("--skip", nargs="*", default=[], choices=["per_row", "polars", "every_family"])
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    parser.add_argument("--run", nargs=6, help=argparse.SUPPRESS)  # internal: one measured child
    args = parser.parse_args()
    if args.run:
        kind, records, out, spec, spec_hash, chunk = args.run
        run_one(kind, Path(records), Path(out), Path(spec), spec_hash, int(chunk) or None)
        return

    from forge.spec.load import load_spec

    folder = args.data or Path(tempfile.mkdtemp(prefix="build_scale_"))
    folder.mkdir(parents=True, exist_ok=True)
    figures = []
    for images in args.images:
        records = fabricate(folder / f"records_{images}.parquet", images)
        work = folder / f"run_{images}"
        subprocess.run(["rm", "-rf", str(work)], check=True)
        work.mkdir()
        spec = records_spec(work, records)
        spec_hash = load_spec(spec).spec_hash
        runs = {"forge": ("forge", work / "forge.lancedb", spec)}
        if "per_row" not in args.skip:
            runs["per_row"] = ("per_row", work / "per_row.parquet", spec)
        if "polars" not in args.skip:
            runs["polars"] = ("polars", work / "polars.parquet", spec)
        if "every_family" not in args.skip:
            runs["every_family"] = ("forge", work / "every_family.lancedb", merged_families_spec(work, records))
        row = {"images": images}
        for name, (kind, out, spec_file) in runs.items():
            result = measure([sys.executable, __file__, "--run", kind, str(records), str(out), str(spec_file), spec_hash,
                              str(args.chunk_size or 0)])
            row[name] = {"seconds": round(result["seconds"], 2), "inner_s": round(result["inner_s"], 2),
                         "peak_gib": round(result["peak_gib"], 2), "rows": result["rows"],
                         **({"stages": result["stages"]} if "stages" in result else {})}
            if "stages" in result:  # rows committed and visible before the indexes are built
                row[name]["written_s"] = round(result["inner_s"] - result["stages"]["index"], 2)
        others = [runs[k][1] for k in ("per_row", "polars") if k in runs]
        row["same_rows"] = same_rows(runs["forge"][1], others) if others else None
        for name in ("per_row", "polars"):
            if name in row:
                row[f"{name}_over_forge"] = round(row[name]["inner_s"] / row["forge"]["inner_s"], 2)
                row[f"{name}_over_forge_written"] = round(row[name]["inner_s"] / row["forge"]["written_s"], 2)
        figures.append(row)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}; data in {folder}")
    for row in figures:
        print(f"{row['images']:,} images:")
        for name in ("forge", "per_row", "polars", "every_family"):
            if name in row:
                r = row[name]
                written = f" ({r['written_s']:.2f} s to rows written, then indexes)" if "written_s" in r else ""
                print(f"  {name:<13} {r['inner_s']:>8.2f} s{written} ({r['seconds']:.2f} s with start-up)  "
                      f"peak {r['peak_gib']:.2f} GiB  {r['rows']:>11,} QA rows" + (f"  stages {r['stages']}" if "stages" in r else ""))
        for name in ("per_row", "polars"):
            if f"{name}_over_forge" in row:
                print(f"  {name} / forge time: {row[f'{name}_over_forge']} "
                      f"({row[f'{name}_over_forge_written']} to rows written)")
        print(f"  same rows in forge, per_row and polars: {row['same_rows']}")
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
