"""`relay check`, `init`, `import-openclaw` and `try`: writing, importing and proving the configuration."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from relay.cli.common import (
    EXIT_CONFIG,
    EXIT_UNAVAILABLE,
    _check_transforms,
    _echo_actions,
    _echo_durability,
    _redis,
    _redis_errors,
    _settings,
)
from relay.errors import ConfigError, RelayError


@click.command("try")
@click.argument("source")
@click.argument("payload", type=click.File("rb"))
@click.option(
    "--header", "-H", "headers", multiple=True, help="A request header, as 'Name: value' (repeatable)."
)
@click.pass_context
def try_(ctx: click.Context, source: str, payload: Any, headers: Sequence[str]) -> None:
    """Show the actions PAYLOAD would become at SOURCE; sends nothing, skips signature checks."""
    from relay.protocol.pipeline import Pipeline, build_sources

    settings = _settings(ctx)
    try:
        sources = build_sources(settings)
        pipeline = Pipeline.from_settings(settings)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    if source not in sources:
        click.echo(
            f"error: no source {source!r} in the configuration (have: {', '.join(sorted(sources))})", err=True
        )
        sys.exit(EXIT_CONFIG)
    src = sources[source]
    hdrs = {}
    for item in headers:
        name, colon, value = item.partition(":")
        if not colon or not name.strip():
            click.echo(f"error: --header {item!r}: write it as 'Name: value'", err=True)
            sys.exit(EXIT_CONFIG)
        hdrs[name.strip().lower()] = value.strip()
    body = payload.read()
    try:
        mapped = pipeline.run(src, hdrs, body, delivery_id="try")
        if mapped.skip:
            click.echo(f"skipped: {mapped.skip}")
            return
        actions = mapped.decision.actions
    except RelayError as exc:
        click.echo(f"error: {payload.name}: {exc.message}", err=True)
        sys.exit(1)
    except Exception as exc:
        click.echo(_user_traceback(exc), err=True)
        sys.exit(1)
    if not actions:
        click.echo("no actions")
    _echo_actions(settings, actions)


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the first frame outside the relay's own code (the user's transform) on."""
    import traceback

    relay_dirs = tuple(str(Path(__file__).resolve().parents[2] / d) for d in ("relay", "presets"))
    tb = exc.__traceback__
    while tb is not None and str(Path(tb.tb_frame.f_code.co_filename).resolve()).startswith(relay_dirs):
        tb = tb.tb_next
    if tb is None:  # raised inside the relay itself: show all of it
        return "".join(traceback.format_exception(exc))
    return "".join(traceback.format_exception(type(exc), exc, tb))


@click.command()
@click.option("--offline", is_flag=True, help="Only validate the config and import the transforms.")
@click.pass_context
def check(ctx: click.Context, offline: bool) -> None:
    """Validate the config, import every transform, then reach Redis and the gateway.

    At the gateway: the hooks token, its session-key policy (printing the OpenClaw settings to add
    when it would refuse the relay's session keys), the WebSocket handshake and the gateway token.
    Nothing is started there. Exits 2 on a config or transform error or an unset secret
    (--offline: only warns about secrets), 3 when Redis or the gateway cannot be reached or will
    refuse deliveries.
    """

    from relay.protocol.pipeline import build_sources

    settings = _settings(ctx)
    try:
        build_sources(settings)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    _check_transforms(settings)
    click.echo(f"config ok: {len(settings.sources)} source(s), {len(settings.mappings)} mapping(s)")
    from relay.config import unresolved_secrets

    missing = unresolved_secrets(settings)  # `relay up` would refuse to start on these
    if offline:
        for secret in missing:
            click.echo(
                f"warning: {secret.where}: {secret.problem} (needed by relay up, serve and worker)", err=True
            )
        return
    if missing:
        _settings(ctx, lenient=False)  # exits 2 with the error `relay up` would give (file and key)
    with _redis_errors():
        client = _redis(settings)
        client.ping()
        click.echo("redis ok")
        _echo_durability(client, settings)
    from relay.delivery import gateway_check

    failed = False
    for name in settings.gateway_names():
        gw = settings.gateway_config(name)
        token = gateway_check.hooks_token(gw)
        findings = [token]
        if token.ok:
            findings.append(gateway_check.session_keys(gw))
            # The other doors: required when a mapping uses them or gateway.auth_token is set.
            doors = gw.auth_token is not None or any(m.action in ("send", "tool") for m in settings.mappings)
            for probe in (gateway_check.websocket, gateway_check.tools_token):
                found = probe(gw)
                if not found.ok and not doors:
                    found = gateway_check.Finding(
                        True, f"note: {found.line} (only `send`/`tool` actions need it)"
                    )
                findings.append(found)
        for found in findings:
            click.echo(found.line if found.ok else f"error: {found.line}", err=not found.ok)
            for line in found.fix:
                click.echo(f"  {line}", err=True)
            failed |= not found.ok
    if failed:
        sys.exit(EXIT_UNAVAILABLE)


@click.command("import-openclaw")
@click.argument("openclaw_config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("relay.yaml"),
    show_default=True,
    help="The relay.yaml to write; transform stubs go next to it.",
)
@click.option("--force", is_flag=True, help="Overwrite the output file and existing stubs.")
def import_openclaw(openclaw_config: Path, output: Path, force: bool) -> None:
    """Write relay.yaml sources and mappings from an OpenClaw config's `hooks` (JSON or JSON5)."""
    import yaml

    from relay.cli.import_openclaw import convert, read_openclaw

    if output.exists() and not force:
        click.echo(f"error: {output} exists; use --force to overwrite it", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        imported = convert(read_openclaw(openclaw_config), openclaw_config.resolve().parent)
    except ValueError as exc:  # also pydantic's ValidationError
        click.echo(f"error: {openclaw_config}: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    header = [f"# Imported from {openclaw_config} by `relay import-openclaw`."]
    header += [f"# NOTE: {note}" for note in imported.notes]
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        "\n".join(header)
        + "\n"
        + yaml.safe_dump(imported.config, sort_keys=False, allow_unicode=True, width=100)
    )
    click.echo(f"wrote {output}")
    for rel, text in imported.stubs.items():
        stub = output.parent / rel
        if stub.exists() and not force:
            click.echo(f"kept existing {stub}", err=True)
            continue
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text(text)
        click.echo(f"wrote {stub} (a stub: port the JavaScript transform into it)")
    for note in imported.notes:
        click.echo(f"note: {note}", err=True)
    if imported.token_env:
        click.echo(f"set {imported.token_env} to the value of hooks.token (it is not copied)", err=True)


class _SenderOption(click.Option):
    """`init --source`: its help lists the senders the presets set up, read only when help is shown
    (importing the presets at start-up would slow every command)."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        import presets

        self.help = f"A sender to set up, by preset: {', '.join(presets.SETUPS)} (repeatable)."
        return super().get_help_record(ctx)


@click.command()
@click.option(
    "--source",
    "-s",
    "sources",
    multiple=True,
    required=True,
    cls=_SenderOption,
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Where relay.yaml and .env are written.",
)
@click.option(
    "--public-url",
    default="http://localhost:8080",
    show_default=True,
    help="The relay's address as the senders reach it.",
)
@click.option(
    "--gateway-url", default="http://127.0.0.1:18789", show_default=True, help="The OpenClaw gateway."
)
@click.option("--force", is_flag=True, help="Overwrite an existing relay.yaml and .env.")
def init(sources: tuple[str, ...], directory: Path, public_url: str, gateway_url: str, force: bool) -> None:
    """Write a first relay.yaml and a .env of fresh secrets (mode 0600); print what to paste into each
    sender."""
    from relay.cli.init import build

    config, dotenv = directory / "relay.yaml", directory / ".env"
    existing = [str(p) for p in (config, dotenv) if p.exists()]
    if existing and not force:
        click.echo(f"error: {' and '.join(existing)} exist(s); use --force to overwrite", err=True)
        sys.exit(EXIT_CONFIG)
    try:
        setup = build(list(sources), public_url, gateway_url)
    except ValueError as exc:
        click.echo(f"error: --source: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(dotenv, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when it existed with wider permissions
    with os.fdopen(fd, "w") as fh:
        fh.write(setup.dotenv)
    config.write_text(setup.config)
    click.echo(f"wrote {config} and {dotenv} (mode 0600; keep it out of version control)\n")
    click.echo(setup.instructions)
    click.echo(
        "\nIn the OpenClaw config (a default gateway refuses the session keys every preset sets):\n"
        "  hooks.allowRequestSessionKey: true\n"
        '  hooks.allowedSessionKeyPrefixes: ["hook:"]\n'
        "and, for send and tool actions, gateway.auth_token here = the gateway's gateway.auth.token.\n"
        "\nthen: relay up, and in another terminal relay check (it proves the tokens and the settings)"
    )


COMMANDS = (check, init, import_openclaw, try_)
