"""forge: turn 2D photos into verified 3D-aware spatial question-answer data.

The package reads like the pipeline: spec -> sources -> perception -> judge (objects -> tuples/sets ->
relations -> verify -> balance -> questions) -> store -> query / sample / export.
"""

__version__ = "0.1.0"
