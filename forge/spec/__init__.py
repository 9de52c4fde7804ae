"""The spec: a question family declared in YAML -> a validated `Spec` (`schema.py`) loaded with errors
that name the file, line and key path (`load.py`), its safe expressions (`expressions.py`) and
question templates (`templates.py`)."""
