"""What a family asks about, and how its candidates are formed from a chunk's objects: tuples of
1-3 objects (`Tuples`), a set of 3-5 objects of an image (`Sets`), or all objects sharing a label
(`Groups`). Every shape-specific decision lives behind this one interface.

Tuples are the k-subsets of an image's objects that passed the object rules, enumerated with
index arithmetic (no join); which object is named first is a seeded hash of the subset, so
answers that depend on naming order come out balanced and reproducible. The funnel still counts
every tuple of every object: a tuple is charged to the first object rule any of its objects fails,
which the object counts per image give without forming the tuple.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from itertools import permutations

import numpy as np
import polars as pl

from forge.judge.hashing import add_hash, salt
from forge.judge.objects import IMAGE_COLUMNS, OBJECT_COLUMNS, ChunkObjects, Requirement, within_group_index
from forge.judge.relations.base import iou
from forge.spec.schema import Family, Spec

SIDES = "abc"
BOX = ("x1", "y1", "x2", "y2")


@dataclass(frozen=True)
class Truth:
    """Ground truth for a chunk's perceived objects: `objects` has, per perceived object (img, idx),
    its matched true object's columns (the object columns of `objects.chunk_objects`) and `matched`;
    `counts` has per (img, label) how many true objects carry the label."""

    objects: pl.DataFrame
    counts: pl.DataFrame


@dataclass(frozen=True)
class Context:
    """What forming a family's candidates depends on beyond the chunk."""

    spec: Spec
    family: Family
    seed: int
    requirements: tuple[Requirement, ...]  # what the relation needs of each named object (objects.requirements)


def combinations(groups: np.ndarray, k: int) -> list[np.ndarray]:
    """Row positions r1 < r2 < ... < rk of every k-subset of rows within each run of equal values
    of the sorted array `groups`, in lexicographic order."""
    n = groups.size
    if n == 0:
        return [np.zeros(0, dtype=np.int64) for _ in range(k)]
    starts = np.flatnonzero(np.concatenate([[True], groups[1:] != groups[:-1]]))
    ends = np.repeat(np.append(starts[1:], n), np.diff(np.append(starts, n)))  # end of each row's run
    tuples = [np.arange(n)]
    for _ in range(k - 1):
        last = tuples[-1]
        later = ends[last] - last - 1
        tuples = [np.repeat(t, later) for t in tuples]
        first_of_block = np.repeat(np.cumsum(later) - later, later)
        tuples.append(tuples[-1] + 1 + (np.arange(tuples[-1].size) - first_of_block))
    return tuples


def _subsets(n: np.ndarray, k: int) -> np.ndarray:
    """C(n, k) elementwise (a product of k consecutive integers is divisible by k!)."""
    product = np.ones_like(n)
    for i in range(k):
        product = product * (n - i)
    return np.where(n >= k, product // math.factorial(k), 0)


def _gather(frame: pl.DataFrame, rows: np.ndarray, prefix: str, columns: list[str]) -> pl.DataFrame:
    return frame.select(columns)[rows].rename({c: f"{prefix}{c}" for c in columns})


class Shape(ABC):
    """How a family's candidates come from a chunk's objects, and what identifies and names them."""

    kind: str  # for messages: "tuple", "set" or "group"
    sides: str  # objects templates may name by label: {a}, {b}, {c}
    names_every_object: bool  # comparative templates must name every side
    answer_types: tuple[str, ...] | None = None  # allowed non-comparative answer types (None: any)
    takes_custom_rules: bool = False

    @abstractmethod
    def describe(self) -> str:
        """What the candidates are, for `forge explain`."""

    @abstractmethod
    def rule_names(self, spec: Spec, requirements: tuple[Requirement, ...]) -> list[str]:
        """Rules decided while forming candidates, in funnel order."""

    @abstractmethod
    def candidates(self, chunk: ChunkObjects, ctx: Context) -> tuple[pl.DataFrame, dict[str, int]]:
        """(candidates with img, key and the relation's input columns; candidates dropped per rule
        while forming them, with `considered` = every candidate the family judges)."""

    @abstractmethod
    def rules(self, family: Family) -> list[tuple[str, pl.Expr]]:
        """Shape-specific rules on the formed candidates, before custom rules and min_margin."""

    @abstractmethod
    def keys(self) -> list[pl.Expr]:
        """Integer columns that identify a candidate within its image (seeds hashes and row ids)."""

    @abstractmethod
    def objects(self, frame: pl.DataFrame) -> pl.Series:
        """The `objects` column of candidates: [{label, box}] in the order the question names them."""

    @abstractmethod
    def annotation_ids(self) -> pl.Expr:
        """The annotation ids of the objects a candidate names, in `objects` order (null for detections)."""

    def choices(self) -> pl.Expr | None:
        """Choices when the options are data (sets); None: the forms' choices."""
        return None

    @abstractmethod
    def with_truth(self, candidates: pl.DataFrame, truth: Truth) -> pl.DataFrame:
        """The candidates with the relation's inputs taken from the ground truth instead of perception,
        and `matched`: every object the question names is a true object (`forge calibrate`)."""

    @abstractmethod
    def phrase_columns(self) -> list[str]:
        """Candidate columns `objects`, `choices` and the labels templates name are made from."""


@dataclass(frozen=True)
class Tuples(Shape):
    """Ordered tuples of `arity` distinct objects of one image: columns a_*, b_*, c_*."""

    arity: int
    kind = "tuple"
    names_every_object = True
    takes_custom_rules = True

    @property
    def sides(self) -> str:  # type: ignore[override]
        return SIDES[: self.arity]

    def describe(self) -> str:
        what = {1: "every object (a)", 2: "every pair of objects (a, b)", 3: "every triple of objects (a, b, c)"}[self.arity]
        return f"{what} that passed the object rules, named in seeded order"

    def rule_names(self, spec: Spec, requirements: tuple[Requirement, ...]) -> list[str]:
        from forge.judge.objects import object_rules

        return [r.name for r in requirements] + [name for name, _ in object_rules(spec)]

    def _funnel(self, chunk: ChunkObjects, requirements: tuple[Requirement, ...]) -> dict[str, int]:
        """Tuples charged to each requirement and object rule: per image, C(m_r, k) - C(m_r+1, k) where
        m_r counts the objects whose first failing requirement or rule is r or later (passing objects
        rank last; requirements rank before the object rules)."""
        rules, needs = len(chunk.object_rules), len(requirements)
        objects = chunk.objects
        reject = objects["reject"].to_numpy()
        rank = np.where(reject == 0, needs + rules, needs + reject - 1)
        for position in range(needs - 1, -1, -1):  # the first requirement an object fails ranks it
            met = objects.select(requirements[position].test("").fill_null(False)).to_series().to_numpy()
            rank = np.where(met, rank, position)
        images = objects["img"].to_numpy()
        table = np.zeros((int(images.max()) + 1 if images.size else 0, needs + rules + 1), dtype=np.int64)
        np.add.at(table, (images, rank), 1)
        at_least = np.cumsum(table[:, ::-1], axis=1)[:, ::-1]  # at_least[:, r] = objects ranked r or later
        subsets = _subsets(at_least, self.arity).sum(axis=0)
        charged = subsets[:-1] - subsets[1:]
        names = [*(r.name for r in requirements), *chunk.object_rules]
        counts = {"considered": int(subsets[0])}
        counts.update({name: int(charged[r]) for r, name in enumerate(names)})
        return counts

    def _tuples(self, chunk: ChunkObjects, seed: int) -> pl.DataFrame:
        """Every tuple of objects that passed the object rules, named in seeded order (memoized per chunk)."""
        memo_key = ("tuples", self.arity, seed)
        if memo_key in chunk.memo:
            return chunk.memo[memo_key]
        passing = chunk.objects.filter(pl.col("reject") == 0)
        rows = combinations(passing["img"].to_numpy(), self.arity)
        if self.arity > 1:
            idx = passing["idx"].to_numpy()
            keyed = pl.DataFrame({"key": passing["key"].to_numpy()[rows[0]],
                                  **{f"i{s}": idx[r] for s, r in enumerate(rows)}})
            keyed = add_hash(keyed, "h", keyed.columns, salt("tuple-order", self.arity, seed))
            perms = np.array(list(permutations(range(self.arity))))
            named = perms[(keyed["h"] % len(perms)).to_numpy().astype(np.int64)]  # which member is a, b, c
            members = np.stack(rows, axis=1)
            rows = [members[np.arange(members.shape[0]), named[:, s]] for s in range(self.arity)]
        columns = [c for c in OBJECT_COLUMNS if c in passing.columns]
        frame = pl.concat([passing.select("img", "key", "metric", *IMAGE_COLUMNS)[rows[0]],
                           *[_gather(passing, r, f"{SIDES[s]}_", columns) for s, r in enumerate(rows)]],
                          how="horizontal")
        chunk.memo[memo_key] = frame
        return frame

    def candidates(self, chunk: ChunkObjects, ctx: Context) -> tuple[pl.DataFrame, dict[str, int]]:
        tuples = self._tuples(chunk, ctx.seed)
        if ctx.requirements:
            tuples = tuples.filter(pl.all_horizontal([r.test(f"{side}_").fill_null(False)
                                                      for r in ctx.requirements for side in self.sides]))
        return tuples, self._funnel(chunk, ctx.requirements)

    def rules(self, family: Family) -> list[tuple[str, pl.Expr]]:
        return []

    def keys(self) -> list[pl.Expr]:
        return [pl.col(f"{side}_idx") for side in self.sides]

    def phrase_columns(self) -> list[str]:
        return [f"{side}_{c}" for side in self.sides for c in ("label", *BOX, "annotation_id")]

    def annotation_ids(self) -> pl.Expr:
        return pl.concat_list([pl.col(f"{side}_annotation_id") for side in self.sides])

    def with_truth(self, candidates: pl.DataFrame, truth: Truth) -> pl.DataFrame:
        columns = [c for c in truth.objects.columns if c not in ("img", "idx")]
        frame = candidates
        for side in self.sides:
            named = {c: f"{side}_{c}" for c in columns}
            frame = frame.drop([n for n in named.values() if n in frame.columns]).join(
                truth.objects.rename({**named, "idx": f"{side}_idx"}), on=["img", f"{side}_idx"], how="left")
        found = [pl.col(f"{side}_matched").fill_null(False) for side in self.sides]
        return frame.with_columns(matched=pl.all_horizontal(found))

    def objects(self, frame: pl.DataFrame) -> pl.Series:
        # built flat and folded into fixed-width lists: Polars nests structs in lists slowly
        k, n = self.arity, frame.height
        labels = frame.select(pl.concat_list([pl.col(f"{side}_label") for side in self.sides]).explode().alias("label"))
        coords = np.stack([frame[f"{side}_{c}"].to_numpy() for side in self.sides for c in BOX], axis=1).reshape(-1)
        boxes = pl.Series("box", coords).reshape((n * k, len(BOX))).arr.to_list()
        members = labels.with_columns(box=boxes).select(pl.struct("label", "box").alias("objects"))["objects"]
        return members.reshape((n, k)).arr.to_list()


def _member_struct() -> pl.Expr:
    return pl.struct(pl.col("label"), pl.concat_arr([pl.col(k) for k in BOX]).arr.to_list().alias("box")).alias("objects")


@dataclass(frozen=True)
class Sets(Shape):
    """One set per image: its objects that passed the object rules, in a seeded order, cut to a
    seeded size in the family's `set_size` range. Lists `labels`, `depths` and `objects` in option order."""

    kind = "set"
    sides = ""
    names_every_object = False
    answer_types = ("multiple_choice",)

    def describe(self) -> str:
        return "one set per image of the objects that passed the object rules, seeded order and size"

    def rule_names(self, spec: Spec, requirements: tuple[Requirement, ...]) -> list[str]:
        return []

    def candidates(self, chunk: ChunkObjects, ctx: Context) -> tuple[pl.DataFrame, dict[str, int]]:
        low, high = ctx.family.set_size
        name = ctx.family.name
        objects = chunk.objects
        images = objects.select("img", "key", *IMAGE_COLUMNS).unique("img", keep="first", maintain_order=True)
        images = add_hash(images, "wanted", ["key"], salt("set-size", name, ctx.seed))
        eligible = add_hash(objects.filter(pl.col("reject") == 0), "order_key", ["key", "idx"],
                            salt("set-order", name, ctx.seed)).sort("img", "order_key")
        eligible = eligible.with_columns(slot=pl.Series(within_group_index(eligible["img"].to_numpy())),
                                         eligible=pl.len().over("img"))
        wanted = pl.lit(low, pl.Int64) + (pl.col("wanted") % (high - low + 1)).cast(pl.Int64)
        sizes = eligible.select("img", "eligible").unique("img").join(images.select("img", wanted.alias("wanted")), on="img")
        members = eligible.join(sizes.select("img", pl.min_horizontal("wanted", "eligible").alias("set_size")), on="img")
        members = members.filter(pl.col("slot") < pl.col("set_size"))
        sets = members.group_by("img", maintain_order=True).agg(
            pl.col("set_size").first(), labels=pl.col("label"), depths=pl.col("depth"), idxs=pl.col("idx"),
            objects=_member_struct(), annotation_ids=pl.col("annotation_id"))
        frame = images.drop("wanted").join(sets, on="img", how="left").with_columns(pl.col("set_size").fill_null(0))
        return frame, {"considered": frame.height}

    def rules(self, family: Family) -> list[tuple[str, pl.Expr]]:
        return [("set_size", pl.col("set_size") >= family.set_size[0])]

    def keys(self) -> list[pl.Expr]:
        return []  # an image has one set per family: the image key identifies it

    def objects(self, frame: pl.DataFrame) -> pl.Series:
        return frame["objects"]

    def choices(self) -> pl.Expr:
        return pl.col("labels")

    def with_truth(self, candidates: pl.DataFrame, truth: Truth) -> pl.DataFrame:
        members = (candidates.select("img", "idxs").with_columns(slot=pl.int_ranges(pl.col("idxs").list.len()))
                   .explode("idxs", "slot").rename({"idxs": "idx"})
                   .join(truth.objects.select("img", "idx", "depth", "matched"), on=["img", "idx"], how="left")
                   .sort("img", "slot"))
        sets = members.group_by("img").agg(depths=pl.col("depth"), complete=pl.col("depth").is_not_null().all(),
                                           matched=pl.col("matched").fill_null(False).all())
        # a member without a true depth leaves the nearest/farthest undecided (null), not decided without it
        sets = sets.with_columns(depths=pl.when(pl.col("complete")).then(pl.col("depths"))).drop("complete")
        return candidates.drop("depths").join(sets, on="img", how="left").with_columns(pl.col("matched").fill_null(False))

    def phrase_columns(self) -> list[str]:
        return ["objects", "labels", "annotation_ids"]

    def annotation_ids(self) -> pl.Expr:
        return pl.col("annotation_ids")


@dataclass(frozen=True)
class Groups(Shape):
    """One group per (image, label) of confident detections (score >= verify.min_score), with
    `count`, `min_score`, `uncertain` (same-label detections below min_score) and `duplicate_iou`
    (the largest overlap of two of its boxes). The label is `a_label`."""

    kind = "group"
    sides = "a"  # the group's label
    names_every_object = False
    answer_types = ("number", "label")

    def describe(self) -> str:
        return "one group per image and label of the detections scored at least verify.min_score"

    def rule_names(self, spec: Spec, requirements: tuple[Requirement, ...]) -> list[str]:
        return []

    def candidates(self, chunk: ChunkObjects, ctx: Context) -> tuple[pl.DataFrame, dict[str, int]]:
        floor = ctx.spec.verify.min_score
        objects = chunk.objects
        confident = objects.filter(pl.col("score") >= floor).sort("img", "label", "idx")
        uncertain = objects.filter(pl.col("score") < floor).group_by("img", "label").agg(uncertain=pl.len())
        group = (confident["img"].cast(pl.Int64) * (1 << 32)
                 + confident["label"].cast(pl.Categorical).to_physical().cast(pl.Int64)).to_numpy()
        first, second = combinations(group, 2)
        boxes = confident.select("img", "label", *BOX, "area")
        pairs = pl.concat([_gather(boxes, first, "a_", ["img", "label", *BOX, "area"]),
                           _gather(boxes, second, "b_", [*BOX, "area"])], how="horizontal")
        overlap = pairs.group_by("a_img", "a_label").agg(duplicate_iou=iou("a", "b").max()).rename(
            {"a_img": "img", "a_label": "label"})
        groups = confident.group_by("img", "label", maintain_order=True).agg(
            pl.col("key").first(), *[pl.col(c).first() for c in IMAGE_COLUMNS],
            count=pl.len(), min_score=pl.col("score").min(), idxs=pl.col("idx"), objects=_member_struct(),
            annotation_ids=pl.col("annotation_id"),
            not_single=(pl.col("crowd").fill_null(False) | pl.col("depiction").fill_null(False)).any())
        partial = chunk.images.select("img", "not_exhaustive")
        groups = (groups.join(uncertain, on=["img", "label"], how="left").join(overlap, on=["img", "label"], how="left")
                  .join(partial, on="img", how="left")
                  .with_columns(pl.col("uncertain").fill_null(0), pl.col("duplicate_iou").fill_null(0.0),
                                partial=pl.col("not_exhaustive").list.contains(pl.col("label")).fill_null(False))
                  .drop("not_exhaustive").rename({"label": "a_label"}))
        return groups, {"considered": groups.height}

    def rules(self, family: Family) -> list[tuple[str, pl.Expr]]:
        # an image whose objects were capped (perception keeps the best scored) cannot say how many there are
        # nor can a label whose annotations are not exhaustive (LVIS), or one with a box around several of
        # them (crowd, group-of) or a picture of one (depiction) among its boxes
        return [("object_cap", pl.col("objects_over_cap") == 0),
                ("not_exhaustive", ~pl.col("partial")),
                ("crowd_or_depiction", ~pl.col("not_single")),
                ("uncertain_detections", pl.col("uncertain") == 0),
                ("duplicates", pl.col("duplicate_iou") <= family.duplicate_iou),
                ("max_count", pl.col("count") <= family.max_count)]

    def keys(self) -> list[pl.Expr]:
        return [pl.col("idxs").list.first()]  # groups partition an image's confident objects: the first names it

    def with_truth(self, candidates: pl.DataFrame, truth: Truth) -> pl.DataFrame:
        counts = truth.counts.rename({"label": "a_label", "count": "true_count"})
        return (candidates.join(counts, on=["img", "a_label"], how="left")
                .with_columns(count=pl.col("true_count").fill_null(0).cast(candidates.schema["count"]), matched=pl.lit(True))
                .drop("true_count"))

    def objects(self, frame: pl.DataFrame) -> pl.Series:
        return frame["objects"]

    def phrase_columns(self) -> list[str]:
        return ["objects", "a_label", "annotation_ids"]

    def annotation_ids(self) -> pl.Expr:
        return pl.col("annotation_ids")

