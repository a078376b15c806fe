"""The bodies the benchmark sends: published payloads, rewritten so that each request is a new event.

Shared by bench/run.py (wrk and loadgen over HTTP) and bench/cpu.py (in-process CPU per request),
so both measure the same bytes. Imports nothing of the relay.

    push1    octokit's push.default.json (a tag push: no `commits`, one head commit), 64 repositories
    push7    the same push with 7 commits of ordinary messages (subject + body), 64 repositories
    single   push1, all to ONE repository: one agent session, the worst case for its lane
    alerts20 an Alertmanager (webhook v4) group notification of 20 firing alerts, one group

GitHub signs the body, so a github variant is a fixed body with its HMAC signature; the delivery
id is a header. Alertmanager's delivery id is a digest of the alerts, so its body carries the
placeholder SEQ, replaced per request by a counter (in the first alert's fingerprint): every
request is a new notification of the same group (one session), authorised by a bearer token.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PUSH = ROOT / "tests" / "fixtures" / "github" / "push.default.json"
ALERTS = ROOT / "tests" / "fixtures" / "alertmanager" / "webhook_v4.firing.json"
GITHUB_SECRET = "bench-github-secret"  # noqa: S105 - a throwaway secret for local processes
ALERTMANAGER_TOKEN = "bench-alertmanager-token"  # noqa: S105
SEQ = b"SEQ"  # replaced by the request's number in an alertmanager body

# Ordinary commit messages: a subject line and, for most, a wrapped body.
COMMIT_MESSAGES = (
    "Fix off-by-one in the pagination of the audit log\n\nThe last page repeated the first entry of the "
    "previous one when the total was a multiple of the page size.",
    "Bump actions/checkout from 4.1.1 to 4.1.7",
    "Add retry with jitter to the S3 uploader\n\nUploads failed permanently on the first 503. They now "
    "retry three times with exponential backoff and full jitter, and log the final failure.",
    "docs: explain how to rotate the signing key\n\nCovers the two-key overlap window and what to do "
    "when a deploy is rolled back in the middle of a rotation.",
    "Refactor the settings loader into smaller functions",
    "Handle empty CSV exports without crashing\n\nAn export with no rows wrote no header and the "
    "importer then failed on the missing columns. Always write the header.",
    "Merge pull request #1347 from octo-org/feature/dark-mode\n\nDark mode for the settings page",
)


@dataclass(frozen=True)
class Workload:
    name: str
    label: str  # for the report
    source: str  # the relay's source (= hook path)
    variants: list[tuple[str, bytes]]  # (credential: signature or token, body) per variant
    per_request_body: bool = False  # the body holds SEQ, replaced by the request number

    def headers(self, credential: str, delivery: str) -> list[tuple[str, str]]:
        if self.source == "github":
            return [
                ("content-type", "application/json"),
                ("x-github-event", "push"),
                ("x-github-delivery", delivery),
                ("x-hub-signature-256", credential),
            ]
        return [("content-type", "application/json"), ("authorization", f"Bearer {credential}")]

    def body(self, variant: int, seq: int) -> bytes:
        body = self.variants[variant % len(self.variants)][1]
        return body.replace(SEQ, str(seq).encode()) if self.per_request_body else body


def sign(body: bytes, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _repos(template: bytes, sessions: int) -> list[tuple[str, bytes]]:
    out = []
    for k in range(sessions):
        body = template.replace(b"Codertocat/Hello-World", f"Codertocat/Hello-World-{k:02d}".encode())
        out.append((sign(body), body))
    return out


def push7() -> bytes:
    """octokit's push fixture as a branch push of 7 commits (ids, messages, timestamps, files differ)."""
    p = json.loads(PUSH.read_bytes())
    head = p["head_commit"]
    commits = []
    for i, message in enumerate(COMMIT_MESSAGES):
        c = copy.deepcopy(head)
        c["id"] = hashlib.sha1(f"bench-commit-{i}".encode()).hexdigest()  # noqa: S324 - an id, not security
        c["tree_id"] = hashlib.sha1(f"bench-tree-{i}".encode()).hexdigest()  # noqa: S324
        c["message"] = message
        c["timestamp"] = f"2019-05-15T15:{20 + i:02d}:41Z"
        c["url"] = c["url"].rsplit("/", 1)[0] + "/" + c["id"]
        c["added"], c["modified"] = ([], [f"src/module_{i}.py", "CHANGELOG.md"])
        commits.append(c)
    p.update(
        ref="refs/heads/main",
        base_ref=None,
        created=False,
        before=commits[0]["id"],
        after=commits[-1]["id"],
        commits=commits,
        head_commit=commits[-1],
        compare=p["compare"].rsplit("/", 1)[0] + f"/{commits[0]['id'][:12]}...{commits[-1]['id'][:12]}",
    )
    return json.dumps(p, separators=(",", ":")).encode()


def alerts20() -> bytes:
    """A group notification of 20 firing alerts (InstanceDown on web-1 … web-20), from the v4 fixture."""
    p = json.loads(ALERTS.read_bytes())
    first = p["alerts"][0]
    alerts = []
    for i in range(20):
        a = copy.deepcopy(first)
        host = f"web-{i + 1}:9100"
        a["labels"]["instance"] = host
        a["annotations"] = {
            "summary": f"Instance {host} down",
            "description": f"{host} of job node has been down for more than 5 minutes.",
        }
        a["fingerprint"] = hashlib.sha256(host.encode()).hexdigest()[:16] + ("-SEQ" if i == 0 else "")
        alerts.append(a)
    p["alerts"] = alerts
    return json.dumps(p, separators=(",", ":")).encode()


def workloads(sessions: int = 64) -> dict[str, Workload]:
    one_commit = PUSH.read_bytes()
    return {
        "push1": Workload(
            "push1",
            f"octokit push.default.json ({len(one_commit):,} B, head commit only), {sessions} repositories",
            "github",
            _repos(one_commit, sessions),
        ),
        "push7": Workload(
            "push7",
            f"push of 7 commits ({len(push7()):,} B), {sessions} repositories",
            "github",
            _repos(push7(), sessions),
        ),
        "single": Workload(
            "single",
            "octokit push.default.json, ONE repository (one session)",
            "github",
            _repos(one_commit, 1),
        ),
        "alerts20": Workload(
            "alerts20",
            f"Alertmanager group of 20 firing alerts ({len(alerts20()):,} B)",
            "alertmanager",
            [(ALERTMANAGER_TOKEN, alerts20())],
            per_request_body=True,
        ),
    }


def write_list(workload: Workload, directory: Path) -> Path:
    """The "<credential>\\t<body file>" list file that wrk_github.lua and loadgen.py cycle through."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for k, (credential, body) in enumerate(workload.variants):
        path = directory / f"{workload.name}-{k:02d}.json"
        path.write_bytes(body)
        lines.append(f"{credential}\t{path}\n")
    out = directory / f"{workload.name}.tsv"
    out.write_text("".join(lines))
    return out
