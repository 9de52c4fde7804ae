"""The parts of `forge sample` (forge/sample.py) that let it sample a table of hundreds of millions of rows
in bounded memory: the seeded row order (order.py), quotas and order thresholds (quotas.py), the scans
(scan.py) and the exact trim with dedup (select.py)."""
