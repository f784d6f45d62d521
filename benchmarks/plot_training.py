"""Draw the curves of a model trained in stages (a run, then runs started ``--init-from`` it) as one.

Each stage's steps are offset by the steps of the stages before it, and the
result is drawn with ``hvq.codec.train.plot`` (what ``hvq train`` draws
for a single run):

    python -m hvq.benchmarks.plot_training STAGE1_DIR STAGE2_DIR -o benchmarks/results/training.png

A stage is a folder holding ``metrics.jsonl`` (and ``validation.jsonl`` when
it validated).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import click

from hvq.codec.train.config import METRICS, VALIDATION
from hvq.codec.train.plot import plot_run
from hvq.codec.train.records import StepRecord, ValidationRecord, read_log


@click.command()
@click.argument("stages", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True)
def main(stages, output):
    offset = 0
    with tempfile.TemporaryDirectory() as joined:
        for name in (METRICS, VALIDATION):
            Path(joined, name).touch()
        for stage in stages:
            last = 0
            for name, kind in ((METRICS, StepRecord), (VALIDATION, ValidationRecord)):
                with Path(joined, name).open("a") as out:
                    for record in read_log(stage / name, kind):
                        last = max(last, record.step)
                        out.write(replace(record, step=record.step + offset).to_json() + "\n")
            offset += last
        plot_run(joined, output, title=" + ".join(stage.name for stage in stages))
    click.echo(f"{output}: {len(stages)} stages, {offset} steps")


if __name__ == "__main__":
    main()
