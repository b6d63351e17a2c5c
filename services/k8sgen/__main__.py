"""``python -m services.k8sgen``: generate, check, render and validate k8s/.

generate            write k8s/base/kafka/{topics,users}.yaml from the specification
check               exit 1 when those files differ from what generate would write
render OVERLAY      print the rendered overlay (kustomize build)
validate [OVERLAY]  render overlays (all by default) and validate every object
"""

from __future__ import annotations

import argparse
import sys

from services.k8sgen import kafka, render, schemas


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m services.k8sgen",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("generate", help="write the generated Kafka manifests")
    sub.add_parser("check", help="fail when the generated manifests are stale")
    p_render = sub.add_parser("render", help="print a rendered overlay")
    p_render.add_argument("overlay", choices=render.OVERLAYS)
    p_validate = sub.add_parser("validate", help="render and validate overlays offline")
    p_validate.add_argument(
        "overlays", nargs="*", metavar="OVERLAY", help=", ".join(render.OVERLAYS)
    )
    args = parser.parse_args(argv)
    if args.command == "validate":
        unknown = sorted(set(args.overlays) - set(render.OVERLAYS))
        if unknown:
            parser.error(f"unknown overlays {unknown}; choose from {list(render.OVERLAYS)}")

    if args.command == "generate":
        for path in kafka.write_generated():
            print(f"wrote {path.relative_to(kafka.REPO)}")
        return 0
    if args.command == "check":
        stale = kafka.stale_files()
        for path in stale:
            print(f"stale: {path.relative_to(kafka.REPO)} (run python -m services.k8sgen generate)")
        return 1 if stale else 0
    if args.command == "render":
        sys.stdout.write(render.build_text(render.K8S / "overlays" / args.overlay))
        return 0
    exe = render.ensure_tools()
    failed = False
    for overlay in args.overlays or render.OVERLAYS:
        objects = render.build_overlay(overlay, exe)
        problems = schemas.validate(objects)
        for problem in problems:
            print(f"{overlay}: {problem}")
        versions = ", ".join(schemas.KUBERNETES_VERSIONS)
        status = "FAILED" if problems else "ok"
        print(f"{overlay}: {len(objects)} objects, Kubernetes {versions}: {status}")
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
