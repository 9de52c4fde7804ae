"""forge: turn 2D photos into verified 3D-aware spatial question-answer data.

The package reads like the pipeline: spec -> plan -> perception -> objects -> pairs ->
relations -> verify -> questions -> store.
"""

__version__ = "0.1.0"
