"""QA table at scale: write, size, filtered slice, GROUP BY, stratified sample — time and peak RAM.

Generates a realistic `qa` table (the real schema, 10 families with skewed sizes and answers),
writes it through forge's store (indexes included), then measures each operation in a fresh
child process, so peak RSS is that operation's own. Prints the figures (and JSON with --json).
Usage: python bench/scale.py [--rows 10000000] [--sample 1000000] [--db DIR]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

FAMILIES = {  # share of rows, answers and their weights
    "depth_order": (0.22, ["first", "second"], [0.5, 0.5]),
    "left_right": (0.16, ["left", "right"], [0.52, 0.48]),
    "above_below": (0.08, ["above", "below"], [0.6, 0.4]),
    "grounding": (0.14, None, None),
    "referring": (0.08, None, None),
    "counting": (0.08, ["1", "2", "3", "4", "5"], [0.6, 0.2, 0.1, 0.06, 0.04]),
    "depth_extreme": (0.07, ["first", "second", "third", "fourth"], [0.3, 0.3, 0.25, 0.15]),
    "perspective_side": (0.07, ["left", "right"], [0.5, 0.5]),
    "distance": (0.05, None, None),
    "wider": (0.05, ["yes", "no"], [0.55, 0.45]),
}
LABELS = ["person", "chair", "table", "car", "dog", "cat", "bottle", "cup", "laptop", "couch", "bed", "book",
          "tv", "bicycle", "potted plant", "clock", "vase", "bench", "umbrella", "backpack"]


def chunk(rng: np.random.Generator, start: int, size: int) -> pa.Table:
    """`size` synthetic rows with the real qa schema and realistic skew."""
    from forge.store import qa_table

    names = list(FAMILIES)
    family = rng.choice(len(names), size, p=[FAMILIES[n][0] for n in names])
    a, b = rng.integers(0, len(LABELS), size), rng.integers(0, len(LABELS), size)
    label_a, label_b = np.array(LABELS)[a], np.array(LABELS)[b]
    boxes = rng.random((size, 4))
    x1, x2 = np.minimum(boxes[:, 0], boxes[:, 1]), np.maximum(boxes[:, 0], boxes[:, 1])
    y1, y2 = np.minimum(boxes[:, 2], boxes[:, 3]), np.maximum(boxes[:, 2], boxes[:, 3])
    answers = np.empty(size, dtype=object)
    for i, name in enumerate(names):
        rows = np.nonzero(family == i)[0]
        options, weights = FAMILIES[name][1], FAMILIES[name][2]
        if options is None:
            answers[rows] = [f"({int(p * 1000)},{int(q * 1000)},{int(r * 1000)},{int(s * 1000)})"
                             for p, q, r, s in zip(x1[rows], y1[rows], x2[rows], y2[rows])]
        else:
            answers[rows] = np.array(options)[rng.choice(len(options), len(rows), p=weights)]
    image = rng.integers(0, max(1, (start + size) // 8), size)
    family_names = np.array(names)[family]
    questions = np.char.add(np.char.add(np.char.add("Which is closer to the camera, the ", label_a), " or the "), label_b)
    box_list = pa.FixedSizeListArray.from_arrays(pa.array(np.stack([x1, y1, x2, y2], 1).ravel()), 4).cast(pa.list_(pa.float64()))
    objects = pa.ListArray.from_arrays(pa.array(np.arange(0, size + 1), pa.int32()),
                                       pa.StructArray.from_arrays([pa.array(label_a), box_list], ["label", "box"]))
    return qa_table(pa.table({
        "qa_id": pa.array([str(v) for v in rng.integers(0, 2**63, size, dtype=np.int64)]),
        # like a sha256 prefix: 32 uniformly distributed hex digits per image
        "image_id": pa.array([f"{v:016x}{w:016x}" for v, w in zip(image.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15),
                                                                 image.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F))]),
        "image_uri": pa.array([f"s3://photos/{v:09d}.jpg" for v in image]),
        "family": pa.array(family_names),
        "template_id": pa.array([f"{f}/0/{t}" for f, t in zip(family_names, rng.integers(0, 3, size))]),
        "question": pa.array(np.char.add(questions, "?")),
        "answer": pa.array(answers.astype(str)),
        "answer_type": pa.array(np.where(np.isin(family_names, ["grounding", "referring", "distance"]), "box", "two_choice")),
        "choices": pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * size + 1, 2), pa.int32()),
                                            pa.array(np.stack([label_a, label_b], 1).ravel())),
        "objects": objects,
        "margin": pa.array(rng.gamma(2.0, 0.2, size)),
        "spec_name": pa.array(np.array(["web_a", "web_b"])[rng.integers(0, 2, size)]),
        "spec_hash": pa.array(["0123456789abcdef"] * size),
        "perception": pa.array(["depth=depth-anything/Depth-Anything-V2-Small-hf;grounding=google/owlv2-base-patch16-ensemble"] * size),
        "depth_kind": pa.array(["relative"] * size),
        "seed": pa.array(np.zeros(size, np.int64)),
        "source_dataset": pa.array(np.array(["openimages", "objects365"])[rng.integers(0, 2, size)]),
        "source_meta": pa.array(np.array(['{"license": "cc-by-2.0"}', '{"license": "cc-by-nc-2.0"}'])[rng.integers(0, 2, size)]),
        "fx": pa.array(np.full(size, 554.3)), "fy": pa.array(np.full(size, 554.3)), "cx": pa.array(np.full(size, 320.0)),
        "cy": pa.array(np.full(size, 240.0)),
        "camera_source": pa.array(np.array(["exif", "default"])[rng.integers(0, 2, size)]),
        "gravity_source": pa.array(np.array(["floor_fit", "none"])[rng.integers(0, 2, size)]),
        "annotation_ids": pa.ListArray.from_arrays(  # the dataset's boxes behind each row
            pa.array(np.arange(0, 2 * size + 1, 2), pa.int32()),
            pa.array([str(v) for v in rng.integers(0, 25_000_000, 2 * size)])),
    }))


SLICE = "family = 'depth_order' AND margin > 0.3"


def _slice(name: str, db: str) -> int:
    import lance
    import lancedb

    from forge.query import run_query

    if name == "slice_lancedb":
        return lancedb.connect(db).open_table("qa").search().where(SLICE).limit(1000).to_arrow().num_rows
    if name == "slice_duckdb":
        return run_query(Path(db), f"SELECT * FROM qa WHERE {SLICE} LIMIT 1000", engine="duckdb").num_rows
    if name == "slice_forge_query":  # what `forge query` does by default: a plain slice scans Lance
        return run_query(Path(db), f"SELECT * FROM qa WHERE {SLICE} LIMIT 1000").num_rows
    if name == "slice_polars":
        import polars as pl

        frame = pl.scan_pyarrow_dataset(lance.dataset(f"{db}/qa.lance"))
        return frame.filter((pl.col("family") == "depth_order") & (pl.col("margin") > 0.3)).head(1000).collect().height
    if name == "slice_daft":
        import daft

        return daft.read_lance(f"{db}/qa.lance").where(daft.sql_expr(SLICE)).limit(1000).to_arrow().num_rows
    # an unselective filter with LIMIT: a scan stops after 1,000 matches, while the scalar
    # indexes first materialize every match (~1M row ids here)
    return lance.dataset(f"{db}/qa.lance").to_table(filter=SLICE, limit=1000,
                                                    use_scalar_index=name == "slice_pylance").num_rows


def _in_child(name: str, db: str, sample: int, queue) -> None:
    """One measured operation in a fresh process: its seconds, result size and peak RSS."""
    import lance
    import lancedb

    from forge.query import run_query
    from forge.sample import Mix, draw

    warm = None
    if name.startswith("slice_"):  # the same query twice: cold (open + index load) and warm
        first = time.perf_counter()
        _slice(name, db)
        warm_start = time.perf_counter()
        _slice(name, db)
        warm = time.perf_counter() - warm_start
        cold = warm_start - first
    start = time.perf_counter()
    if name.startswith("slice_"):
        rows = _slice(name, db)
    elif name == "groupby_duckdb":
        rows = run_query(Path(db), "SELECT family, answer, count(*) AS n FROM qa GROUP BY 1, 2").num_rows
    elif name == "groupby_pylance_sql":
        rows = lance.dataset(f"{db}/qa.lance").sql("SELECT family, answer, count(*) AS n FROM dataset GROUP BY family, answer").build().to_batch_records()
        rows = sum(b.num_rows for b in rows)
    elif name == "count_indexed":
        rows = lancedb.connect(db).open_table("qa").count_rows("family = 'counting'")
    elif name == "stratified_sample":
        quotas = {f: sample // len(FAMILIES) for f in FAMILIES}
        table, report = draw(Path(db), Mix(quotas=quotas, stratify=["answer_type"]), seed=0)
        rows = table.num_rows
    else:
        raise ValueError(name)
    seconds = time.perf_counter() - start
    if warm is not None:
        seconds = {"cold": round(cold, 3), "warm": round(warm, 3)}
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec, so a child would report its parent's peak
    peak_kib = int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0])
    queue.put((seconds, rows, peak_kib / 1024))


def measure(name: str, db: Path, sample: int) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_in_child, args=(name, str(db), sample, queue))
    process.start()
    while True:  # a child that crashes (Daft has aborted on this kind of query) must not hang the run
        try:
            seconds, rows, peak = queue.get(timeout=1)
            break
        except Exception:
            if not process.is_alive():
                return {"op": name, "failed": f"process exited with {process.exitcode}"}
    process.join()
    seconds = seconds if isinstance(seconds, dict) else round(seconds, 3)
    return {"op": name, "seconds": seconds, "rows": rows, "peak_rss_mib": round(peak)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--sample", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=None, help="keep the database here (default: a temp folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from forge.store import Store

    folder = args.db or Path(tempfile.mkdtemp())
    db = folder / "scale.lancedb"
    shutil.rmtree(db, ignore_errors=True)
    rng = np.random.default_rng(0)
    store = Store(db)
    start = time.perf_counter()
    from forge.store import QA_SCHEMA

    table = store.table("qa", QA_SCHEMA)
    for offset in range(0, args.rows, args.chunk):
        table.add(chunk(rng, offset, min(args.chunk, args.rows - offset)))
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    store.maintain("qa")
    index_s = time.perf_counter() - start
    size = int(subprocess.run(["du", "-sb", str(db)], capture_output=True, text=True).stdout.split()[0])
    results = [{"op": "write", "seconds": round(write_s, 2), "rows": args.rows},
               {"op": "indexes + optimize", "seconds": round(index_s, 2)},
               {"op": "size on disk", "mib": round(size / 2**20)}]
    for name in ("slice_forge_query", "slice_lance_scan", "slice_lancedb", "slice_pylance", "slice_duckdb",
                 "slice_polars", "slice_daft", "count_indexed", "groupby_duckdb",
                 "groupby_pylance_sql", "stratified_sample"):
        results.append(measure(name, db, args.sample))
    print(f"machine: {platform.machine()}, {mp.cpu_count()} cores; rows {args.rows:,}, sample {args.sample:,}")
    for r in results:
        print("  " + ", ".join(f"{k}={v}" for k, v in r.items()))
    if args.json:
        print(json.dumps(results))
    if args.db is None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
