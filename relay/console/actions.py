"""The console's forms that change something: replaying dead letters, parked events and a time
selection (with its preview), and pausing or resuming a source or gateway."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from relay.console import data
from relay.console.auth import Session
from relay.console.base import ConsoleBase, form_field, page_link

# One "replay all of a source" request replays at most this many.
MAX_REPLAY_ALL = 5000


class ActionPages(ConsoleBase):
    """The POST forms (CSRF-checked by `guarded`): each does its work, then redirects with a note."""

    async def dead_replay(
        self, request: Request, session: Session | None, form: dict[str, list[str]]
    ) -> Response:
        from relay.store.deadletters import replay
        from relay.store.selection import record_action_replay

        source, new_key = form_field(form, "source"), form_field(form, "new_key") == "1"

        def work() -> tuple[int, int]:
            ids = (
                data.dead_ids_of_source(self.redis, source, MAX_REPLAY_ALL)
                if form_field(form, "all")
                else form.get("ids", [])
            )
            done = [aid for aid in ids if replay(self.redis, self.settings, aid, new_key=new_key)]
            for aid in done:  # kept on the event: who (the console) and when
                record_action_replay(self.redis, aid, by="console", new_key=new_key)
            return len(done), len(ids)

        done, asked = await self.run(work)
        back = form_field(form, "back")
        target = back if back.startswith("/console/events/") else "/console/dead"
        return RedirectResponse(page_link(target, done=f"Replayed {done} of {asked} dead letter(s)."), 303)

    async def parked_replay(
        self, request: Request, session: Session | None, form: dict[str, list[str]]
    ) -> Response:
        from relay.store.replay import Replayer, parked_ids
        from relay.store.selection import record_replay

        source = form_field(form, "source")

        def work() -> str:
            with self._replay_lock:  # the Replayer's transform budget is not shared between threads
                if self._replayer is None:
                    self._replayer = Replayer(self.redis, self.settings)
                ids = (
                    parked_ids(self.redis, source, MAX_REPLAY_ALL)
                    if form_field(form, "all")
                    else form.get("ids", [])
                )
                outcomes = [self._replayer.replay(eid) for eid in ids]
            for outcome in outcomes:
                if outcome.state not in ("missing", "refused"):
                    record_replay(
                        self.redis, outcome.event_id, by="console", what=f"mapped again: {outcome.state}"
                    )
            ok = sum(1 for o in outcomes if o.ok)
            failed = [o for o in outcomes if not o.ok]
            note = f" {len(failed)} failed again or were refused." if failed else ""
            return f"Replayed {ok} of {len(outcomes)} parked event(s).{note}"

        message = await self.run(work)
        back = form_field(form, "back")
        target = back if back.startswith("/console/events/") else "/console/parked"
        return RedirectResponse(page_link(target, done=message), 303)

    def _selection(self, params: Any) -> tuple[Any, str]:
        """relay.store.selection's plan for the replay form's fields, or an error to show."""
        from relay.store.search import parse_time
        from relay.store.selection import plan

        state = params.get("state", "")
        try:
            since = parse_time(params.get("since", ""))
            until = parse_time(params["until"]) if params.get("until") else None
        except ValueError as exc:
            return None, str(exc)
        if state not in ("", "dead", "parked", "delivered"):
            return None, "unknown state"
        return plan(self.redis, since=since, until=until, source=params.get("source", ""), state=state), ""

    async def replay_form(
        self, request: Request, session: Session | None, form: dict[str, list[str]]
    ) -> Response:
        """Replay by time: the form, and for its fields a count preview with the confirm button."""
        q = request.query_params
        fields = {name: q.get(name, "")[:40] for name in ("source", "since", "until", "state")}
        new_key = q.get("new_key") == "1"
        preview, error = None, ""
        if fields["since"]:
            chosen, error = await self.run(self._selection, fields)
            if chosen is not None:
                counts = chosen.counts()
                total = counts["dead"] + counts["parked"] + (counts["delivered"] if new_key else 0)
                preview = {
                    **counts,
                    "total": total,
                    "examined": chosen.examined,
                    "stopped_early": chosen.stopped_early,
                }
        return self.html(
            "replay.html",
            session=session,
            sources=sorted(self.settings.sources),
            preview=preview,
            error=error,
            new_key=new_key,
            done=q.get("done", ""),
            source=fields["source"],
            since=fields["since"],
            until=fields["until"],
            state=fields["state"],
        )

    async def replay_selection(
        self, request: Request, session: Session | None, form: dict[str, list[str]]
    ) -> Response:
        from relay.store.selection import execute

        fields = {name: form_field(form, name)[:40] for name in ("source", "since", "until", "state")}
        new_key = form_field(form, "new_key") == "1"

        def work() -> str:
            chosen, error = self._selection(fields)
            if chosen is None:
                return error
            done = execute(self.redis, self.settings, chosen, by="console", new_key=new_key)
            r = done.replayed
            return (
                f"Replayed {r['dead']} dead, {r['parked']} parked and {r['delivered']} delivered event(s)"
                f" of {form_field(form, 'confirm') or '?'} previewed."
                + (f" {len(done.parked_again)} failed again." if done.parked_again else "")
            )

        message = await self.run(work)
        return RedirectResponse(page_link("/console/replay", done=message), 303)

    async def pause_resume(
        self, request: Request, session: Session | None, form: dict[str, list[str]]
    ) -> Response:
        """The System page's Pause / Resume buttons (relay.store.pause), recorded as by the console."""
        from relay.store import pause

        kind, name, action = form_field(form, "kind"), form_field(form, "name"), form_field(form, "action")
        if (
            kind not in pause.KINDS
            or name not in pause.known_names(self.settings, kind)
            or action not in ("pause", "resume")
        ):
            return self.html("error.html", 400, session, message="No such source or gateway.")

        def work() -> str:
            if action == "pause":
                fresh = pause.pause(
                    self.redis, kind, name, by="console", reason=form_field(form, "reason")[:200]
                )  # type: ignore[arg-type]
                return f"{kind} {name} paused." if fresh else f"{kind} {name} was paused already."
            was, released = pause.resume(self.redis, self.settings, kind, name)  # type: ignore[arg-type]
            return (
                f"{kind} {name} resumed; {released} held action(s) queued."
                if was
                else f"{kind} {name} was not paused."
            )

        return RedirectResponse(page_link("/console/system", done=await self.run(work)), 303)
