"""Write the protocol's JSON Schema files into ``schemas/json/`` (``python -m schemas.export``).

The files are checked in so plugins in other languages can read the contract; a test
regenerates them and fails when they drift from the pydantic models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import TypeAdapter

from schemas.messages import ERROR_CODES, EVENTS, JOB_STATES, PROTOCOL_VERSION, REQUESTS, Header

JSON_DIR = Path(__file__).parent / "json"


def _schema(model) -> dict:
    if isinstance(model, TypeAdapter):
        return model.json_schema()
    return model.model_json_schema()


def render() -> dict[str, str]:
    """File name -> JSON text for every schema file."""
    files: dict[str, dict] = {"header.json": _schema(Header)}
    for name, model in REQUESTS.items():
        files[f"request.{name}.json"] = _schema(model)
    for name, model in EVENTS.items():
        files[f"event.{name}.json"] = _schema(model)
    files["protocol.json"] = {
        "protocol_version": PROTOCOL_VERSION,
        "version_frame": f"v2a/{PROTOCOL_VERSION}",
        "frames": ["version", "msgpack(header)", "msgpack(body)", "*binary blobs"],
        "header": "header.json",
        "requests": {name: f"request.{name}.json" for name in REQUESTS},
        "events": {name: f"event.{name}.json" for name in EVENTS},
        "job_states": list(JOB_STATES),
        "error_codes": ERROR_CODES,
    }
    return {name: json.dumps(schema, indent=2, sort_keys=True) + "\n" for name, schema in files.items()}


def write(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    rendered = render()
    for stale in directory.glob("*.json"):
        if stale.name not in rendered:
            stale.unlink()
    paths = []
    for name, text in rendered.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


def main() -> int:
    paths = write()
    print(f"wrote {len(paths)} schema files to {JSON_DIR}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
