"""Command line: `python -m labkit doctor`, `python -m labkit grade FOLDER` and `python -m labkit train RECIPE`."""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit", description="The course's lab kit.")
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser("doctor", help="check this machine for the course")
    doctor.add_argument("--no-benchmark", action="store_true", help="skip the ~1 s matrix-multiply measurement")
    commands.add_parser("grade", help="run a folder of submitted notebooks and score their exercises", add_help=False)
    commands.add_parser("train", help="train one of the course's GPT recipes (torchrun can start it)", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "train":
        from .recipes import main as train_main

        return train_main(rest)
    if args.command == "doctor":
        from .readiness import doctor as run_doctor

        report = run_doctor(benchmark=not args.no_benchmark)
        print(report)
        return 0 if report.ok else 1
    from .course.grading import main as grade_main

    return grade_main(rest)


if __name__ == "__main__":
    status = main()
    if "torch.distributed" in sys.modules:  # `train` under torchrun: end without C++'s teardown (see exit_process)
        from .distributed import exit_process

        exit_process(status)
    sys.exit(status)
