"""`manage.py run_analytics`: do now what the analytics beat tasks do, and say what was done."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError

from analytics import rollups


def _day(value: str) -> datetime:
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as exc:
        raise CommandError(f"--rebuild-since must be a date YYYY-MM-DD, not {value!r}") from exc


def _buckets(summary: dict) -> str:
    counts = summary["buckets"]
    return f"{counts['minute']:,} minute, {counts['hour']:,} hour and {counts['day']:,} day buckets"


class Command(BaseCommand):
    help = (
        "Roll the request log up now, until caught up (what the analytics.rollup_pending task does every "
        "30 s), refresh every user's recommendations (the daily analytics.generate_recommendations), and "
        "print a summary. --rebuild-since recomputes every bucket from that day on."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--rebuild-since",
            metavar="YYYY-MM-DD",
            help="also recompute every minute, hour and day bucket from that UTC day to now, for every user",
        )

    def handle(self, *args, rebuild_since: str | None = None, **options):
        since = _day(rebuild_since) if rebuild_since else None
        if since is not None and since < rollups.retention_horizon():
            raise CommandError(
                f"--rebuild-since {rebuild_since} is before the raw-log retention "
                f"({rollups.retention_horizon():%Y-%m-%d %H:%M} UTC): its raw rows may be pruned."
            )
        started = time.monotonic()
        # The steps, in order; each may read what the ones before it wrote.
        steps: list[Callable[[], None]] = [self.roll_up]
        if since is not None:
            steps.append(lambda: self.rebuild(since))
        steps.append(self.recommend)  # what the daily analytics.generate_recommendations task does
        for step in steps:
            step()
        self.stdout.write(f"Done in {time.monotonic() - started:.1f} s.")

    def roll_up(self) -> None:
        summary = rollups.rollup_pending()
        self.stdout.write(
            f"Rolled up {summary['rows']:,} new request-log rows in {summary['batches']} batch(es) and "
            f"{summary['late_minutes']:,} late minute(s): {_buckets(summary)}, "
            f"{summary['rollup_rows']:,} rollup rows written, in {summary['seconds']:.1f} s "
            f"(cursor at id {summary['cursor']})."
        )
        if summary["skipped_minutes"]:
            self.stdout.write(
                f"Skipped {summary['skipped_minutes']:,} minute(s) older than the raw-log retention."
            )

    def recommend(self) -> None:
        from analytics.tasks import generate_recommendations

        summary = generate_recommendations()
        self.stdout.write(
            f"Generated {summary['recommendations']:,} recommendation(s) for {summary['users']:,} user(s) "
            "with traffic in the last 30 days."
        )

    def rebuild(self, since: datetime) -> None:
        def progress(granularity: str, done: int, total: int) -> None:
            if done == total or done % 10_000 == 0:
                self.stdout.write(f"  {granularity}: {done:,} / {total:,} buckets")

        try:
            summary = rollups.rollup_rebuild(since=since, progress=progress)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Rebuilt {_buckets(summary)} since {since:%Y-%m-%d}: {summary['rollup_rows']:,} rollup rows "
            f"written in {summary['seconds']:.1f} s."
        )
