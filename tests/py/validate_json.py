"""Validates JSON documents (one per line of stdin) against a JSON Schema
(argv[1]) with the jsonschema package (PyPI), draft 2020-12. Prints one line
per invalid document and exits 1 if any; prints the count and exits 0
otherwise."""

import json
import sys

from jsonschema import Draft202012Validator


def main():
    with open(sys.argv[1]) as f:
        schema = json.load(f)
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    bad = n = 0
    for i, line in enumerate(sys.stdin):
        if not line.strip():
            continue
        n += 1
        for err in validator.iter_errors(json.loads(line)):
            bad += 1
            print(f"document {i + 1}: {'/'.join(map(str, err.absolute_path))}: {err.message}")
    if bad:
        sys.exit(1)
    print(f"{n} documents valid")


if __name__ == "__main__":
    main()
