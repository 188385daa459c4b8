"""Published schemas (the ones check-jsonschema vendors), applied in-process: one validator
per schema and worker, instead of a new interpreter per file."""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
from ruamel.yaml import YAML


@functools.cache
def _validator(name: str) -> Any:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / f"{name}.json"
    schema = json.loads(vendored.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


def schema_errors(path: Path, name: str) -> list[str]:
    """What keeps this YAML or JSON file from matching the named vendored schema (YAML is
    read as 1.2, so GitHub's `on:` stays a string)."""
    text = path.read_text()
    document = json.loads(text) if path.suffix == ".json" else YAML(typ="safe").load(text)
    return [
        f"{list(error.absolute_path)}: {error.message}" for error in _validator(name).iter_errors(document)
    ]
