"""The ``montaged`` command. Every command is a thin layer over the library (sqlite-utils' habit):
parse options, call one function, print its result for people or as one JSON document.

Exit codes: 0 success, 1 the work failed, 2 bad usage or bad configuration, 3 (``status``) the
daemon is not running.

Errors are turned into messages and exit codes in one place, :class:`Command`: a library error
(:class:`~montaged.errors.MontagedError`, which carries its exit code) or a click error raised
in a command's body ends the command with ``montaged: <message>`` on stderr and, when the
command was given ``--json``, ``{"error": "<message>", "exit": N}`` on stdout.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from pathlib import Path

import click

from montaged import __version__
from montaged.config import Settings, describe, load_settings, to_toml_value
from montaged.errors import ConfigError, MontagedError, StoreError

EXIT_FAILURE, EXIT_USAGE, EXIT_NOT_RUNNING = 1, 2, 3

EXIT_CODES = """\b
Exit codes:
  0  success
  1  the work failed (a file, a job, the store, the log)
  2  bad usage or bad configuration (the message names the file, the key, the problem)
  3  status: the daemon is not running

With --json, a command that reports prints one JSON document on stdout (logs: one JSON
object per line); an error is {"error": "...", "exit": N} on stdout as well as the message
on stderr.

\b
Shell completion (bash; zsh_source and fish_source likewise):
  eval "$(_MONTAGED_COMPLETE=bash_source montaged)"
"""

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), default=None,
    help="Config file (default: $MONTAGED_CONFIG, /etc/montaged/config.toml, ./montaged.toml, built-in defaults).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")


def _settings(config_path: str | None, *, check_paths: bool = False) -> Settings:
    return load_settings(config_path, check_paths=check_paths)  # ConfigError: Command reports it


def _print_json(doc) -> None:
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False, default=str))


class Failure(click.ClickException):
    """A library error as click ends a command with: ``montaged: <message>`` and its exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"montaged: {self.format_message()}", err=True)


def _json_error(message: str, code: int, **extra) -> None:
    click.echo(json.dumps({"error": message, "exit": code, **extra}, ensure_ascii=False, default=str))


class Command(click.Command):
    """A command whose errors, found once its arguments are parsed, end it the same way
    everywhere: the message on stderr, the contract's exit code, and with ``--json`` one JSON
    object on stdout. (Errors in the arguments themselves are click's usage errors, exit 2.)"""

    def invoke(self, ctx: click.Context):
        as_json = bool(ctx.params.get("as_json"))
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            if as_json:
                _json_error("invalid configuration: " + "; ".join(exc.problems), exc.exit_code, problems=exc.problems)
            raise Failure("invalid configuration:\n" + "\n".join(f"  {p}" for p in exc.problems), exc.exit_code) from None
        except MontagedError as exc:
            if as_json:
                _json_error(str(exc), exc.exit_code)
            raise Failure(str(exc), exc.exit_code) from None
        except click.ClickException as exc:
            if as_json:
                _json_error(exc.format_message(), exc.exit_code)
            raise


class Group(click.Group):
    """Every command and sub-group of ``montaged`` reports errors through :class:`Command`."""

    command_class = Command
    group_class = type


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES)
@click.version_option(__version__, "--version", message="montaged %(version)s")
def cli() -> None:
    """montaged: watch ingest folders, analyse clips and music as they land, and render a
    beat-synced preview montage when a folder's manifest (montage.toml) appears."""


def main() -> None:
    cli(prog_name="montaged")


# ---- run --------------------------------------------------------------------------------------
@cli.command()
@config_option
def run(config_path: str | None) -> None:
    """Run the daemon in the foreground (what systemd starts).

    SIGTERM or Ctrl-C stops it gracefully (running jobs get daemon.stop_timeout seconds); a second
    one stops it at once; SIGHUP reloads the configuration."""
    from montaged.daemon import Daemon

    from montaged.service import Notifier, setup_logging

    # Nothing the daemon creates (database, logs, previews) is world-readable; systemd's
    # UMask=0027 says the same, this covers runs outside systemd.
    os.umask(0o027)
    settings = _settings(config_path)
    try:
        settings.paths.state.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MontagedError(f"cannot create the state directory {settings.paths.state}: {exc.strerror or exc}") from None
    # journald when stderr is the journal, else a rotating log file in the state directory.
    logging_setup = setup_logging(settings.paths.state, settings.daemon.log_level)
    if os.geteuid() == 0 and not settings.daemon.allow_root:
        logging.getLogger("montaged").error(
            "refusing to run as root: run montaged as an unprivileged user (the systemd unit uses "
            "User=montaged), or set allow_root = true in [daemon] if you really mean it"
        )
        sys.exit(EXIT_USAGE)
    # unset_environment: worker processes must never talk to systemd's notify socket.
    notifier = Notifier(unset_environment=True)
    daemon = Daemon(settings, config_path=config_path, notifier=notifier, journal=logging_setup.journal)
    sys.exit(daemon.run())


# ---- status / jobs / retry / inspect -------------------------------------------------------------
@cli.command()
@config_option
@json_option
@click.option("--watch", "watch", is_flag=True, help="Refresh the view every second until Ctrl-C.")
def status(config_path: str | None, as_json: bool, watch: bool) -> None:
    """Is the daemon running, what is queued and running, every folder's preview, and what went
    wrong. Exits 3 when the daemon is not running (still printing what the store knows)."""
    from montaged.status import status_document

    settings = _settings(config_path)
    fetch = functools.partial(status_document, settings.paths.state, settings.paths.watch)
    if watch and not as_json:
        from montaged.statusview import watch_status

        watch_status(fetch)
        return
    doc = fetch()
    if as_json:
        _print_json(doc)
    else:
        from montaged.statusview import render_status

        import datetime as dt
        import shutil

        encoding = (getattr(sys.stdout, "encoding", None) or "").lower()
        click.echo(render_status(doc, width=shutil.get_terminal_size((100, 24)).columns, color=sys.stdout.isatty(),
                                 ascii="utf" not in encoding, now=dt.datetime.now(dt.timezone.utc)))
    if not doc["daemon"]["running"]:
        sys.exit(EXIT_NOT_RUNNING)


JOB_STATES = ("queued", "running", "done", "failed", "quarantined")


@cli.command(name="jobs")
@config_option
@click.option("--state", type=click.Choice(JOB_STATES), default=None, help="Only jobs in this state.")
@click.option("-n", "limit", type=int, default=None, help="Only the last N jobs.")
@json_option
def jobs_command(config_path: str | None, state: str | None, limit: int | None, as_json: bool) -> None:
    """Jobs with their kind, state, attempts, timings and error."""
    from montaged.status import job_list

    settings = _settings(config_path)
    if not (settings.paths.state / "montaged.db").exists():
        rows = []
    else:
        rows = job_list(settings.paths.state, state, limit)
    if as_json:
        _print_json(rows)
        return
    if not rows:
        click.echo("no jobs" + (f" in state {state}" if state else ""))
        return
    click.echo(f"{'ID':>6}  {'KIND':8} {'STATE':12} {'TRIES':>5}  {'FINISHED':20}  PATH")
    for r in rows:
        click.echo(f"{r['id']:>6}  {r['kind']:8} {r['state']:12} {r['attempts']:>5}  {(r['finished'] or '-'):20}  {r['path']}")
        if r["error"]:
            click.echo(f"{'':>6}  error: {r['error']}")


@cli.command()
@config_option
@click.argument("ids", nargs=-1, type=int)
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed and quarantined job.")
@json_option
def retry(config_path: str | None, ids: tuple[int, ...], all_failed: bool, as_json: bool) -> None:
    """Put failed or quarantined jobs back in the queue (by ID, or all with --failed).

    Exits 1 when none of the IDs given could be retried."""
    from montaged import jobs
    from montaged.store import Store

    if not ids and not all_failed:
        raise click.UsageError("give job IDs (see `montaged jobs --state failed`) or --failed")
    settings = _settings(config_path)
    if not (settings.paths.state / "montaged.db").exists():
        raise StoreError(f"no montaged database in {settings.paths.state}")
    with Store(settings.paths.state) as store:
        retried = jobs.retry_jobs(store, list(ids), all_failed=all_failed)
    code = EXIT_FAILURE if ids and not retried else 0
    if as_json:
        _print_json({"requeued": retried, "asked": list(ids), "failed": all_failed})
    elif not retried:
        click.echo("nothing to retry: no failed or quarantined job" + (" with those IDs" if ids else ""))
    else:
        click.echo(f"requeued {len(retried)} job(s): {', '.join(map(str, retried))}")
    sys.exit(code)


@cli.command()
@config_option
@click.argument("path", type=click.Path(path_type=Path))
@json_option
def inspect(config_path: str | None, path: Path, as_json: bool) -> None:
    """What the store knows about a file (state, digest, jobs, features) or a folder."""
    from montaged.status import inspect_path

    settings = _settings(config_path)
    if not (settings.paths.state / "montaged.db").exists():
        raise StoreError(f"no montaged database in {settings.paths.state}")
    doc = inspect_path(settings.paths.state, path)
    if as_json:
        _print_json(doc)
    elif doc["type"] == "unknown":
        click.echo(f"{doc['path']}: not known to montaged")
    elif doc["type"] == "file":
        click.echo(f"{doc['path']}\n  state: {doc['state']}  kind: {doc['kind']}  digest: {doc['digest']}")
        if doc["error"]:
            click.echo(f"  error: {doc['error']}")
        for other in doc["same_content"]:
            click.echo(f"  same content as: {other}")
        if doc["features"]:
            click.echo(_feature_summary(doc["features"]))
    else:
        click.echo(doc["path"])
        if doc["preview"]:
            p = doc["preview"]
            click.echo(f"  preview: {p['state']}  {p['preview'] or ''}  {p['error'] or ''}")
        for f in doc["files"]:
            click.echo(f"  {f['state']:12} {f['path']}" + (f"  ({f['error']})" if f["error"] else ""))
    if doc["type"] == "unknown":
        sys.exit(EXIT_FAILURE)


def _feature_summary(f: dict) -> str:
    if f.get("kind") == "video":
        return (f"  video {f.get('display_width', f.get('width'))}x{f.get('display_height', f.get('height'))} "
                f"{f.get('fps', 0):.2f} fps, {f.get('duration', 0):.1f}s, {len(f.get('scenes', []))} scenes")
    return (f"  audio {f.get('duration', 0):.1f}s, {f.get('tempo', 0):.1f} BPM, {len(f.get('beats', []))} beats, "
            f"confidence {f.get('confidence', 0):.2f}")


# ---- one-shot analysis and preview -------------------------------------------------------------
@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--scenes", type=click.Choice(["auto", "sparse", "full", "exact"]), default="auto",
              show_default=True,
              help="Scene detection strategy for videos: auto picks sparse or full; exact runs "
                   "PySceneDetect itself (needs the 'exact' extra).")
@json_option
def analyze(paths: tuple[Path, ...], scenes: str, as_json: bool) -> None:
    """Analyse files once, without a daemon, and print their features."""
    from montaged.analysis import analyze_path
    from montaged.digest import file_digest
    from montaged.termprogress import terminal_progress

    results, failed = [], 0
    bar = terminal_progress(sys.stderr)
    for i, path in enumerate(paths):
        label = f"analysing {path.name}" + (f" ({i + 1}/{len(paths)})" if len(paths) > 1 else "")
        try:
            digest = file_digest(str(path))
            analysis = analyze_path(str(path), (lambda f, label=label: bar.update(label, f)) if bar else None,
                                    scenes=scenes)
        except (MontagedError, OSError) as exc:
            error = str(exc) if isinstance(exc, MontagedError) else exc.strerror or str(exc)
            if bar:
                bar.close()  # the message gets a line of its own
            failed += 1
            click.echo(f"montaged: {path}: {error}", err=True)
            results.append({"path": str(path), "error": error})
            continue
        results.append({"path": str(path), "digest": digest, **analysis.features})
    if bar:
        bar.close()
    if as_json:
        _print_json(results)
    else:
        for r in results:
            if "error" in r:
                continue
            click.echo(r["path"])
            click.echo(_feature_summary(r))
            for i, s in enumerate(r.get("scenes", [])):
                click.echo(f"    scene {i}: {s['start']:.2f}-{s['end']:.2f}s (frames {s['start_frame']}-{s['end_frame']})  "
                           f"motion {s['motion']:.2f}  sharpness {s['sharpness']:.2f}  brightness {s['brightness']:.2f}")
    sys.exit(EXIT_FAILURE if failed else 0)


@cli.command()
@config_option
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the preview and edit lists go (default: the output root, as the daemon would).")
@json_option
def preview(config_path: str | None, folder: Path, out_dir: Path | None, as_json: bool) -> None:
    """Render a folder's preview once, without a daemon (analysing what the store does not know)."""
    from montaged.oneshot import default_out_dir, preview_once
    from montaged.termprogress import terminal_progress

    settings = _settings(config_path)
    folder = folder.resolve()
    out_dir = (out_dir or default_out_dir(settings, folder)).resolve()
    bar = terminal_progress(sys.stderr)
    # On a terminal the bar says what is analysed; elsewhere a line per file, as before.
    say = None if as_json or bar else lambda m: click.echo(m, err=True)
    show = (lambda what, f: bar.update(what if what == "rendering" else f"analysing {Path(what).name}", f)) if bar else None
    try:
        edit, outputs = preview_once(settings, folder, out_dir, log=say, progress=show)
    finally:
        if bar:
            bar.close()
    doc = {"folder": str(folder), "outputs": {k: str(v) for k, v in outputs.items()}, "cuts": len(edit.to_dict()["cuts"]),
           "duration": edit.to_dict()["duration"], "warnings": list(getattr(edit, "warnings", []) or [])}
    if as_json:
        _print_json(doc)
    else:
        for w in doc["warnings"]:
            click.echo(f"warning: {w}", err=True)
        click.echo(doc["outputs"].get("preview", ""))


# ---- logs ---------------------------------------------------------------------------------------
@cli.command()
@config_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they are logged.")
@click.option("-n", "lines", default="50", show_default=True, metavar="N|all", help="How many of the last lines to show (all: every line).")
@click.option("--since", default=None, help="Only lines since this time: ISO time, or relative (10m, 2h, 1d, yesterday).")
@click.option("--level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False), default=None,
              help="Only lines at this level or more severe.")
@click.option("--path", "path_filter", default=None, help="Only lines about this file or folder (and what is under it).")
@click.option("--json", "as_json", is_flag=True,
              help="JSON lines: one object per record (time, level, logger, message, path, job, folder, detail).")
def logs(config_path: str | None, follow: bool, lines: str, since: str | None, level: str | None,
         path_filter: str | None, as_json: bool) -> None:
    """The daemon's log: journald when it runs under systemd, its log file otherwise."""
    from montaged import logs as logs_mod

    if lines != "all" and not lines.isdigit():
        raise click.BadParameter("must be a number or 'all'", param_hint="-n")
    settings = _settings(config_path)
    code = logs_mod.show_logs(settings.paths.state, follow=follow, lines=None if lines == "all" else int(lines),
                              since=since, level=level.upper() if level else None, path=path_filter, as_json=as_json)
    sys.exit(code or 0)


# ---- config -------------------------------------------------------------------------------------
@cli.group()
def config() -> None:
    """Validate a configuration file or print the effective configuration."""


@config.command("check")
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@json_option
def config_check(path: str | None, as_json: bool) -> None:
    """Validate a config file (default: the one montaged would use). Exits 2 naming every problem."""
    settings = _settings(path, check_paths=True)
    source = str(settings.source) if settings.source else None
    if as_json:
        _print_json({"ok": True, "source": source})
    else:
        click.echo(f"ok: {source or 'built-in defaults (no config file found)'}")


@config.command("show")
@config_option
@json_option
def config_show(config_path: str | None, as_json: bool) -> None:
    """Print the effective configuration as TOML, with where each value came from."""
    settings = _settings(config_path)
    rows = describe(settings)
    if as_json:
        doc = {"source": str(settings.source) if settings.source else None, "settings": {}}
        for label, value, origin, help_text in rows:
            name, key = label.split(".", 1)
            doc["settings"].setdefault(name, {})[key] = {"value": value, "origin": origin, "help": help_text}
        _print_json(doc)
        return
    click.echo(f"# effective configuration (file: {settings.source or 'none, built-in defaults'})")
    section = None
    for label, value, origin, help_text in rows:
        name, key = label.split(".", 1)
        if name != section:
            click.echo(f"\n[{name}]")
            section = name
        click.echo(f"{key} = {to_toml_value(value)}  # {origin}: {help_text}")


if __name__ == "__main__":  # pragma: no cover
    main()
