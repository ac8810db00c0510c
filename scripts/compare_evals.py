"""Compare two `inpaint evaluate --json` reports of the same faces face by face: for each mask
and metric, the mean difference (after - before) with its 95% interval and the number of faces
on which `after` scores better. A difference whose interval excludes 0 is measured; one that
straddles 0 is not (a mean 0.03 dB apart can be either).

    inpaint evaluate aligned/celeba-val --model pretrained --json before.json
    inpaint evaluate aligned/celeba-val --model runs/mine/model --json after.json
    python scripts/compare_evals.py before.json after.json [--method completed]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inpaint.evaluate import METRICS, paired_differences  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--method", choices=["blended", "completed"], default="blended")
    args = parser.parse_args(argv)
    for path in (args.before, args.after):
        if not path.is_file():  # a folder, a FIFO (which would block), a missing path
            print(f"error: {path} is not a file", file=sys.stderr)
            return 1
    try:
        reports = [json.loads(p.read_text(encoding="utf-8")) for p in (args.before, args.after)]
        diffs = paired_differences(*reports, method=args.method)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read a report: {exc}", file=sys.stderr)
        return 1
    except (KeyError, TypeError, AttributeError):
        print("error: not an inpaint evaluate report (inpaint evaluate --json writes one)",
              file=sys.stderr)
        return 1
    except ValueError as exc:  # json's errors too
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not diffs:
        print("error: the reports share no mask type", file=sys.stderr)
        return 1
    print(f"| mask | metric ({args.method}) | before | after | after - before (95% interval) "
          "| faces better |")
    print("|---|---|---|---|---|---|")
    for kind, by_metric in diffs.items():
        for metric in METRICS:
            d = by_metric[metric]
            a, b = (r["results"][kind][args.method][metric] for r in reports)
            print(f"| {kind} | {metric} | {a:.3f} | {b:.3f} | {d['mean']:+.3f} "
                  f"({d['low']:+.3f} to {d['high']:+.3f}) | {d['better']} of {d['n']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
