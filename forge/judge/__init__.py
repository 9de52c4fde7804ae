"""The judge stage: perception records -> verified, balanced, phrased QA rows, a chunk at a time.

Modules in pipeline order: `objects` (object rows and the rules on one object), `shapes` (the
tuples, sets or groups a family asks about), `relations/` (each family's geometry), `verify`
(rules on the formed candidates, the funnel), `balance` (answer cells, global caps), `questions`
(templates, answers, row ids); `chunk` composes them for one chunk, `driver` runs every chunk as
a Daft plan; `hashing` is the seeded hash every choice uses.
"""

DEFAULT_CHUNK_SIZE = 20_000  # images judged together; memory follows it (bench/RESULTS.md)
