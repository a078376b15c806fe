"""`relay import-openclaw`: an OpenClaw config's `hooks` section as relay.yaml sources and mappings.

- `hooks.presets: ["gmail"]` → a `gmail` source with `preset: gmail`;
- `hooks.mappings` → `mappings:`, unchanged (except the transform module, see below); each
  `match.path` becomes a `generic` source of that name, authenticated with the same hooks token
  the senders already use, so `/hooks/<path>` keeps working on the relay;
- `hooks.token` → `gateway.token: env:OPENCLAW_HOOKS_TOKEN` (or the `${VAR}` it named): the
  secret itself is never written out;
- JS/TS `transform.module`s cannot run here: each gets a Python stub next to the output (with the
  original source in a comment when it is found) and the mapping points at the stub. A stub
  raises until it is filled in, so events are parked, not lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import json5

from relay.protocol.mapping_config import FOR_EACH_INSTEAD, MappingConfig
from relay.protocol.policy import SESSION_KEY_PREFIX, SESSION_KEY_SETTING

TOKEN_ENV = "OPENCLAW_HOOKS_TOKEN"  # noqa: S105 - a variable name, not a secret
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_KNOWN_KEYS = {f.alias or n for n, f in MappingConfig.model_fields.items()} | set(MappingConfig.model_fields)
_RESERVED = {"agent", "wake"}
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_GATEWAY_POLICY = (
    "defaultSessionKey",
    "allowRequestSessionKey",
    "allowedSessionKeyPrefixes",
    "allowedAgentIds",
)


@dataclass
class Imported:
    config: dict[str, Any]
    stubs: dict[Path, str] = field(default_factory=dict)  # path (relative to the output folder) → text
    notes: list[str] = field(default_factory=list)
    token_env: str | None = None


def read_openclaw(path: Path) -> dict[str, Any]:
    try:
        data = json5.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON5: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be an object")
    return data


def _stub_name(module: str) -> str:
    stem = re.sub(r"\.(m|c)?[jt]sx?$", "", module.strip().lstrip("./"))
    name = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_").lower() or "transform"
    return name if not name[0].isdigit() else f"t_{name}"


def _stub(module: str, export: str | None, original: str | None, where: str) -> str:
    fn = export or "transform"
    lines = [
        f'"""Port of the OpenClaw hook transform {module!r} ({where}).',
        "",
        "Return what the JS transform returned: a dict such as",
        '{"kind": "agent", "message": ..., "sessionKey": ...} or {"kind": "wake", "text": ...}',
        "(merged over the mapping's own fields), an AgentAction / WakeAction, a list of them, or",
        "None to skip the event. `event.payload`, `event.headers`, `event.query` and `event.path`",
        "are what the JS function received as `payload`, `headers`, `url.searchParams` and `path`.",
        "",
        "Until this is filled in, events it would handle are parked (kept); `relay replay --parked`",
        "sends them once it works. Test it with relay.testing.map_event",
        '(see docs/mappings-and-transforms.md, "Write a transform")."""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Any",
        "",
        "from relay import Event",
        "",
    ]
    if original is not None:
        lines += ["# The original module:", "#"]
        lines += [f"# {line}".rstrip() for line in original.splitlines()[:300]]
        lines.append("")
    lines += [
        "",
        f"def {fn}(event: Event) -> Any:",
        f'    raise NotImplementedError("port {module} from JavaScript first")',
        "",
    ]
    return "\n".join(lines)


def _gateway_url(data: dict[str, Any]) -> str:
    raw = data.get("gateway")
    gateway: dict[str, Any] = raw if isinstance(raw, dict) else {}
    port = gateway.get("port") if isinstance(gateway.get("port"), int) else 18789
    return f"http://127.0.0.1:{port}"


def convert(data: dict[str, Any], config_dir: Path, stub_dir: str = "transforms") -> Imported:
    """The relay config for the OpenClaw config `data` (read from `config_dir`)."""
    hooks = data.get("hooks")
    if not isinstance(hooks, dict):
        raise ValueError("the config has no `hooks` section")
    out: Imported = Imported(config={})
    notes = out.notes
    if not hooks.get("enabled", False):
        notes.append("hooks.enabled is not true in the OpenClaw config; imported anyway")

    gateway: dict[str, Any] = {"url": _gateway_url(data)}
    token = hooks.get("token")
    if isinstance(token, str) and token:
        ref = _ENV_REF.match(token.strip())
        out.token_env = ref.group(1) if ref else TOKEN_ENV
        gateway["token"] = f"env:{out.token_env}"
    else:
        notes.append("hooks.token is not set; set gateway.token before starting the relay")
    path = hooks.get("path")
    if isinstance(path, str) and path.strip() and path.strip() != "/hooks":
        gateway["hooks_path"] = "/" + path.strip().strip("/")
    out.config["gateway"] = gateway
    token_ref = gateway.get("token")
    auth = {"token": token_ref} if token_ref else {}

    sources: dict[str, Any] = {}
    for preset in hooks.get("presets") or []:
        if preset == "gmail":
            # `gog gmail watch serve` posts with the hooks token (--hook-token); a Pub/Sub push
            # straight to the relay needs `audience:` instead (see the gmail preset).
            sources["gmail"] = {"preset": "gmail", **auth}
        else:
            notes.append(f"hooks.presets: {preset!r} is not an OpenClaw preset the relay knows; skipped")

    transforms_dir = config_dir / "hooks" / "transforms"
    if isinstance(hooks.get("transformsDir"), str) and hooks["transformsDir"].strip():
        transforms_dir = transforms_dir / hooks["transformsDir"].strip()

    mappings: list[dict[str, Any]] = []
    for i, raw in enumerate(hooks.get("mappings") or []):
        if not isinstance(raw, dict):
            notes.append(f"hooks.mappings[{i}] is not an object; skipped")
            continue
        mapping = dict(raw)
        for key in sorted(set(mapping) - _KNOWN_KEYS):
            if key == "forEach":
                notes.append(
                    f"hooks.mappings[{i}].forEach is not supported by the relay; dropped: {FOR_EACH_INSTEAD}"
                )
            else:
                notes.append(f"hooks.mappings[{i}].{key} is not supported by the relay; dropped")
            mapping.pop(key)
        if mapping.get("allowUnsafeExternalContent") is True:
            notes.append(
                f"hooks.mappings[{i}].allowUnsafeExternalContent: true is dropped: the relay never "
                "sends it, so sender text stays wrapped by the gateway"
            )
            mapping.pop("allowUnsafeExternalContent")
        raw_match = mapping.get("match")
        match: dict[str, Any] = raw_match if isinstance(raw_match, dict) else {}
        match_path = str(match.get("path") or "").strip().strip("/")
        if not match_path:
            notes.append(f"hooks.mappings[{i}] has no match.path: it applies to every source")
        elif match_path in _RESERVED:
            notes.append(
                f"hooks.mappings[{i}]: /hooks/{match_path} is the gateway's own endpoint; "
                "the relay serves it directly, so this mapping never matches"
            )
        elif not _SOURCE_NAME.match(match_path):
            notes.append(
                f"hooks.mappings[{i}].match.path {match_path!r} has a '/' or other characters "
                "a relay source name cannot have; add a source for it by hand"
            )
        elif match_path not in sources:
            sources[match_path] = {"preset": "gmail" if match_path == "gmail" else "generic", **auth}
        transform = mapping.get("transform")
        if isinstance(transform, dict) and isinstance(transform.get("module"), str):
            module = transform["module"]
            export = transform.get("export") or None
            name = _stub_name(module)
            stub_path = Path(stub_dir) / f"{name}.py"
            original_file = transforms_dir / module
            original = original_file.read_text(errors="replace") if original_file.is_file() else None
            out.stubs[stub_path] = _stub(module, export, original, f"hooks.mappings[{i}]")
            mapping["transform"] = {"module": stub_path.as_posix(), **({"export": export} if export else {})}
            notes.append(f"hooks.mappings[{i}].transform {module!r} is JavaScript: port it in {stub_path}")
        mappings.append(mapping)
        MappingConfig.model_validate(mapping)  # fail here, not at start-up, on a value the relay refuses

    gmail = hooks.get("gmail")
    if isinstance(gmail, dict):
        for key in ("model", "thinking", "allowUnsafeExternalContent"):
            if key in gmail:
                notes.append(
                    f"hooks.gmail.{key} is not imported; set {key} on a mapping for path gmail instead"
                )
    if hooks.get("allowRequestSessionKey") is not True:
        notes.append(
            "hooks.allowRequestSessionKey is not true in the OpenClaw config: the gateway will refuse "
            "every action with a sessionKey (all presets set one) and delivery pauses until it has "
            + " and ".join(SESSION_KEY_SETTING.splitlines())
        )
    else:
        prefixes = hooks.get("allowedSessionKeyPrefixes")
        if (
            isinstance(prefixes, list)
            and prefixes
            and not any(
                isinstance(p, str) and SESSION_KEY_PREFIX.startswith(p.strip().lower()) for p in prefixes
            )
        ):
            notes.append(
                f"hooks.allowedSessionKeyPrefixes lacks {SESSION_KEY_PREFIX!r}: the gateway will refuse "
                "the presets' session keys; add it"
            )
    for key in _GATEWAY_POLICY:
        if key in hooks:
            notes.append(
                f"hooks.{key} stays a gateway setting: the gateway still enforces it on what "
                "the relay delivers"
            )
    if sources:
        out.config["sources"] = sources
    if mappings:
        out.config["mappings"] = mappings
    return out
