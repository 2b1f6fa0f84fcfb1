"""A stream's settings: the one schema the server stores (as JSON), the API validates, the UI's
form is generated from, and the benchmark's live replay creates its stream with.

Each field's `title` and `description` are the form's label and help; `json_schema_extra`
`form` names the widget where the type alone does not say it. `stream_config()` and
`window_spec()` hand the detectors and the window cutter what they need.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from logsense.models.policy import TARGET_FPR
from logsense.models.stream import StreamConfig
from logsense.models.windowing import MAX_SESSION_LINES, WindowSpec
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

FORMAT_PRESETS = ("auto", "hdfs", "bgl", "syslog", "iso8601", "json", "android", "apache", "cbs", "python", "log4j",
                  "hpc", "bracketed", "epoch", "generic")


def _check_regex(value: str | None, what: str = "regex") -> str | None:
    """An operator's regex runs on RE2 (linear time): one RE2 cannot run is refused, saying why."""
    if value is not None:
        from logsense.models.parsing.userregex import check

        check(value, what)
    return value


class MaskRule(BaseModel):
    """A custom masking rule: every match of `regex` becomes `replacement`."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    regex: str = Field(min_length=1)
    replacement: str = "<*>"

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, value: str, info: ValidationInfo) -> str:
        from logsense.models.parsing.masking import check_rule_regex

        check_rule_regex(info.data.get("name", "custom"), value)  # a preset's own regex is accepted as is
        return value


CONTEXT_MARGIN_SECONDS = 300.0  # a context link's time range: this much either side of the line
CONTEXT_FIELDS = ("stream", "template_id", "from", "to", "from_ms", "to_ms")  # server.links.context_link
MAX_SPAN_SECONDS = 30 * 86400  # the longest window or idle timeout: a month of log time
LOGGPT_BOUNDS = {  # LogGPTConfig fields an operator may set, within what trains on one machine
    "n_layer": (1, 12), "n_head": (1, 16), "n_embd": (8, 1024), "n_positions": (8, 4096), "dropout": (0.0, 0.9),
    "lr": (1e-6, 1.0), "weight_decay": (0.0, 1.0), "batch_size": (1, 4096), "max_epochs": (1, 1000),
    "patience": (0, 1000), "val_fraction": (0.0, 0.9), "seed": (0, 2**32 - 1), "rl_steps": (0, 100_000),
    "rl_top_k": (1, 100_000), "rl_lr": (1e-7, 1.0), "target_fpr": (1e-6, 0.5),
}


def _form(kind: str, **extra: Any) -> dict:
    return {"form": kind, **extra}


class StreamSettings(BaseModel):
    """Per-stream settings (a new field needs no migration: the server stores them as JSON).

    Grouping: with `session_regex`, a line joins the session of every key the regex finds and a
    session closes after `idle_timeout_seconds` of log time without lines; without it, lines are
    cut into count windows of `window_size` and/or time windows of `window_seconds`.
    """

    model_config = ConfigDict(extra="forbid")

    format: Literal[FORMAT_PRESETS] = Field(  # type: ignore[valid-type]
        "auto", title="Header format",
        description="How each line's header (time, level) is read; auto: recognized from the stream's own lines.")
    format_regex: str | None = Field(
        None, title="Custom header regex",
        description="Optional: named groups timestamp, level, message. Overrides the format.")
    session_regex: str | None = Field(
        None, title="Session regex",
        description=r"Lines with the same match form a session (HDFS: blk_-?\d+). Empty: count or time windows.")
    window_size: int | None = Field(20, ge=2, le=10_000, title="Window size (lines)",
                                    description="Lines per count window (2 to 10000).", json_schema_extra=_form("number", step="1"))
    window_seconds: float | None = Field(None, ge=1, le=MAX_SPAN_SECONDS, allow_inf_nan=False, title="Window length (seconds)",
                                         description="Seconds per time window, by log time (1 s to 30 days); empty: none.")
    idle_timeout_seconds: float = Field(300.0, ge=1, le=MAX_SPAN_SECONDS, allow_inf_nan=False,
                                        title="Session idle timeout (s)",
                                        description="A session or window closes after this long without a line (log time, 1 s to 30 days).")
    rapid_k: int = Field(5, ge=1, le=1000, title="RAPID k", description="Nearest normal lines compared token by token.",
                         json_schema_extra=_form("number", step="1"))
    rapid_threshold: float | None = Field(None, ge=0, le=1, title="RAPID threshold",
                                          description="Fixed flag threshold in [0, 1]; empty: calibrated.")
    rapid_target_fpr: float = Field(TARGET_FPR, gt=0, lt=1, title="RAPID target false-positive rate",
                                    description="Calibrates the threshold on held-back normal lines.")
    loggpt_top_k: int | None = Field(None, ge=1, le=100_000, title="LogGPT top-K", description="Fixed K; empty: calibrated.",
                                     json_schema_extra=_form("number", step="1"))
    loggpt_target_fpr: float = Field(TARGET_FPR, gt=0, lt=1, title="LogGPT target false-positive rate",
                                     description="Calibrates K on held-back normal windows.")
    retrain_cron: str | None = Field(None, title="Retrain schedule (crontab)",
                                     description="Empty: the server's nightly schedule; 'off': never.")
    loggpt_config: dict[str, Any] = Field(default_factory=dict, title="LogGPT config (JSON object)",
                                          description='Overrides of LogGPTConfig, e.g. {"n_layer": 2}.',
                                          json_schema_extra=_form("json"))
    mask_rules: list[str | MaskRule] | None = Field(
        None, title="Mask rules (JSON list)",
        description='Empty: the defaults. Preset names or {"name", "regex", "replacement"} objects.',
        json_schema_extra=_form("json"))
    context_url: str | None = Field(
        None, max_length=2000, title="Context link (URL template)",
        description="Optional: a link to the lines around an anomaly in Grafana, Kibana or the like, shown on the "
                    "anomaly page and sent with alerts. Placeholders: {stream}, {template_id}, {from}, {to} (ISO 8601) "
                    "and {from_ms}, {to_ms} (epoch ms), 5 minutes either side of the line.")
    train_mode: bool = Field(True, title="Train mode",
                             description="On: incoming lines are stored as normal training data and not scored.")
    retention_days: int | None = Field(
        None, ge=1, le=36_500, title="Keep data for (days)",
        description="Lines, windows and answered anomalies older than this are deleted daily (lines of open or "
                    "confirmed anomalies are kept); empty: keep everything.", json_schema_extra=_form("number", step="1"))

    @field_validator("format_regex", "session_regex")
    @classmethod
    def _regexes_compile(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("empty: leave it out (null) instead")  # "" would match everywhere, or nothing
        return _check_regex(value, info.field_name or "regex")

    @field_validator("format_regex")
    @classmethod
    def _format_regex_has_a_message(cls, value: str | None) -> str | None:
        from logsense.models.parsing.userregex import compile_user

        if value is not None and "message" not in compile_user(value, "format_regex").groupindex:
            raise ValueError("a custom header regex needs a named group (?P<message>...): the rest of the line")
        return value

    @field_validator("context_url")
    @classmethod
    def _check_context_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("a context link starts with http:// or https://")
        import string

        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            raise ValueError(f"not a URL template ({exc}); write a literal brace as {{{{ or }}}}") from None
        unknown = sorted(names - set(CONTEXT_FIELDS))
        if unknown:
            raise ValueError(f"unknown placeholder(s) {unknown}; known: {', '.join(CONTEXT_FIELDS)}")
        return value

    @field_validator("retrain_cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is not None and value != "off":
            from apscheduler.triggers.cron import CronTrigger

            try:
                trigger = CronTrigger.from_crontab(value)
            except ValueError as exc:
                raise ValueError(f"invalid crontab expression (or use 'off'): {exc}") from None
            if trigger.get_next_fire_time(None, datetime.now(timezone.utc)) is None:
                raise ValueError(f"{value!r} never fires (or use 'off')")
        return value

    @field_validator("mask_rules")
    @classmethod
    def _check_mask_rules(cls, value: list | None) -> list | None:
        """An unknown preset name is a 422 now, not a failure at every later ingest."""
        if value is not None:
            from logsense.models.parsing.masking import resolve_rules

            resolve_rules(value)  # ValueError names the rule and the known presets
        return value

    @field_validator("loggpt_config")
    @classmethod
    def _check_loggpt_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        """Unknown LogGPT fields are refused now, with the known ones named, not at the first training."""
        from dataclasses import fields

        from logsense.models.loggpt import LogGPTConfig

        known = {f.name for f in fields(LogGPTConfig)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown LogGPT setting(s) {unknown}; known: {sorted(known)}")
        for name, v in value.items():
            if name in LOGGPT_BOUNDS and not (v is None and name == "rl_top_k"):
                low, high = LOGGPT_BOUNDS[name]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high:
                    raise ValueError(f"loggpt_config.{name} must be a number from {low} to {high}, not {v!r}")
        if value.get("device") not in (None, "cpu", "cuda", "auto"):
            raise ValueError(f"loggpt_config.device must be 'cpu', 'cuda' or 'auto', not {value['device']!r}")
        defaults = LogGPTConfig()
        n_embd, n_head = value.get("n_embd", defaults.n_embd), value.get("n_head", defaults.n_head)
        if n_embd % n_head:
            raise ValueError(f"loggpt_config: n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        return value

    @model_validator(mode="after")
    def _check_grouping(self) -> "StreamSettings":
        if self.session_regex is None and self.window_size is None and self.window_seconds is None:
            raise ValueError("set session_regex, window_size or window_seconds: lines must be grouped for LogGPT")
        return self

    @classmethod
    def read_stored(cls, stored: dict[str, Any]) -> tuple["StreamSettings", list[str]]:
        """Settings stored by an older version, whose checks were looser: the fields that fail
        today's checks fall back to their defaults (named in the second value), so a stored row
        can never break a stream or a page."""
        from pydantic import ValidationError

        data = dict(stored)
        dropped: list[str] = []
        for _ in range(len(data) + 1):
            try:
                return cls.model_validate(data), dropped
            except ValidationError as exc:
                bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"] and str(e["loc"][0]) in data}
                if not bad:  # a rule across fields (grouping): the defaults group lines
                    bad = {k for k in ("session_regex", "window_size", "window_seconds") if k in data}
                    if not bad:
                        break
                dropped += sorted(bad)
                data = {k: v for k, v in data.items() if k not in bad}
        return cls(train_mode=bool(stored.get("train_mode", True))), sorted(set(stored))

    def stream_config(self) -> StreamConfig:
        """What the detectors read of these settings."""
        rules = None
        if self.mask_rules is not None:
            rules = [r if isinstance(r, str) else (r.name, r.regex, r.replacement) for r in self.mask_rules]
        return StreamConfig(
            preset=self.format, regex=self.format_regex, mask_rules=rules, session_regex=self.session_regex,
            rapid_k=self.rapid_k, rapid_threshold=self.rapid_threshold, rapid_target_fpr=self.rapid_target_fpr,
            loggpt_top_k=self.loggpt_top_k, loggpt_target_fpr=self.loggpt_target_fpr, loggpt=dict(self.loggpt_config),
        )

    def window_spec(self, max_session_lines: int = MAX_SESSION_LINES) -> WindowSpec:
        """What the window cutter reads of these settings."""
        return WindowSpec(sessions=self.session_regex is not None, window_size=self.window_size,
                          window_seconds=self.window_seconds, idle_timeout_seconds=self.idle_timeout_seconds,
                          max_session_lines=max_session_lines)
