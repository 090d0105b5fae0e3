#!/usr/bin/env python3
"""Expand a SAM template into plain CloudFormation, fully offline.

Usage: sam2cfn.py <sam-template.yaml> <output.json>

cfn-lint (1.x) validates SAM resources against SAM schemas but no longer runs the
transform, so mistakes inside generated resources (event source mappings, schedules,
IAM roles) slip through. This script runs aws-sam-translator locally so the result can
be linted as ordinary CloudFormation. It makes no AWS calls:

* local CodeUri/ContentUri/DefinitionUri paths are swapped for an s3:// placeholder,
  which is what `sam package` would do after uploading;
* managed policy names are not looked up in IAM (the loader returns nothing; the
  translator falls back to its bundled name -> ARN map);
* a region is still required by the translator's ARN generator, so AWS_DEFAULT_REGION
  (or AWS_REGION) must be set; us-east-1 is used if neither is.
"""

import json
import os
import sys

from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

PLACEHOLDER_URI = "s3://placeholder-bucket/placeholder.zip"
LOCAL_URI_KEYS = ("CodeUri", "ContentUri", "DefinitionUri")


class OfflinePolicyLoader:
    """Stands in for the IAM-backed managed policy loader."""

    def load(self):
        return {}


def rewrite_local_uris(template):
    count = 0
    for resource in (template.get("Resources") or {}).values():
        props = resource.get("Properties") or {}
        for key in LOCAL_URI_KEYS:
            value = props.get(key)
            if isinstance(value, str) and not value.startswith("s3://"):
                props[key] = PLACEHOLDER_URI
                count += 1
    return count


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    src, dst = argv[1], argv[2]

    if not os.environ.get("AWS_DEFAULT_REGION"):
        os.environ["AWS_DEFAULT_REGION"] = os.environ.get("AWS_REGION") or "us-east-1"

    with open(src, encoding="utf-8") as fh:
        template = yaml_parse(fh.read())
    rewritten = rewrite_local_uris(template)

    try:
        expanded = transform(template, {}, OfflinePolicyLoader())
    except InvalidDocumentException as exc:
        print(f"sam2cfn: {src} is not a valid SAM template:", file=sys.stderr)
        for cause in exc.causes:
            print(f"  - {cause.message}", file=sys.stderr)
        return 1

    out_dir = os.path.dirname(os.path.abspath(dst))
    os.makedirs(out_dir, exist_ok=True)
    with open(dst, "w", encoding="utf-8") as fh:
        json.dump(expanded, fh, indent=1, sort_keys=False)
        fh.write("\n")

    resources = expanded.get("Resources") or {}
    kinds = {}
    for resource in resources.values():
        kinds[resource.get("Type")] = kinds.get(resource.get("Type"), 0) + 1
    summary = ", ".join(f"{n} {t}" for t, n in sorted(kinds.items()))
    print(f"sam2cfn: {src} -> {dst}: {len(resources)} resources ({rewritten} local URIs rewritten)")
    print(f"sam2cfn: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
