"""Perception: images -> one record per image with grounded objects and their depth.

Every input (synthetic scenes, annotations, models, a table of records) produces the same record
(`records.RECORD_SCHEMA`), so everything downstream is shared. `perceivers.py` picks the input.
"""
