"""Delivery states per channel that tell the truth: the one home used by the pages, the API and
``xraygate results``.

A channel is an outbox ``channel`` with a way to tell from the settings whether it is switched on.
For one study, each channel is in exactly one :class:`DeliveryState`:

- ``not configured``: the channel is off in the settings (nothing will ever be sent);
- ``failed``: a message of the study on this channel is dead-lettered (needs a person);
- ``delivered``: the study has at least one message on the channel and every one was accepted;
- ``pending``: on, but nothing accepted yet (not scored yet, the message not built yet, or
  waiting for a retry).

The channels a site switches on are :data:`CHANNELS`; another service registers its own with
:func:`register_channel` (e.g. a PACS channel for DICOM SR/SC). Escalation channels (high-risk
only) are reported when the study has messages on them, and are left out otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from xraygate.core.states import Channel, OutboxState

if TYPE_CHECKING:  # the models load only where a session reads the outbox (see load)
    from sqlmodel import Session

    from xraygate.core.config import Settings


class DeliveryState(StrEnum):
    NOT_CONFIGURED = "not configured"
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@dataclass(frozen=True)
class DeliveryChannel:
    """An output a site can switch on: ``target`` says where it goes (None when off)."""

    name: str
    label: str
    target: Callable[[Settings], str | None]
    enable_hint: str = ""  # the settings that switch it on, for the start-up block

    def configured(self, settings: Settings) -> bool:
        return self.target(settings) is not None


def _hl7_target(s: Settings) -> str | None:
    return f"mllp://{s.hl7_host}:{s.hl7_port}" if s.hl7_host and s.hl7_port else None


def _fhir_push_target(s: Settings) -> str | None:
    return s.fhir_push_url or None


def _pacs_target(s: Settings) -> str | None:
    """The PACS channel (``pacs/``): STOW-RS when its URL is set, else C-STORE (as it sends)."""
    if s.pacs_stow_url:
        return f"STOW-RS {s.pacs_stow_url}"
    if s.pacs_host and s.pacs_port:
        scheme = "dicom+tls" if s.pacs_tls else "dicom"
        return f"{scheme}://{s.pacs_ae}@{s.pacs_host}:{s.pacs_port}"
    return None


CHANNELS: list[DeliveryChannel] = [
    DeliveryChannel(
        Channel.HL7.value, "HL7 ORU^R01", _hl7_target, "XRAYGATE_HL7_HOST + XRAYGATE_HL7_PORT"
    ),
    DeliveryChannel(
        Channel.FHIR_PUSH.value, "FHIR push", _fhir_push_target, "XRAYGATE_FHIR_PUSH_URL"
    ),
    DeliveryChannel(
        Channel.PACS.value,
        "PACS (DICOM SR)",
        _pacs_target,
        "XRAYGATE_PACS_HOST + XRAYGATE_PACS_PORT, or XRAYGATE_PACS_STOW_URL",
    ),
]


def register_channel(channel: DeliveryChannel) -> None:
    """Add a channel (a service that delivers elsewhere, e.g. to a PACS); replaces a same name."""
    CHANNELS[:] = [c for c in CHANNELS if c.name != channel.name] + [channel]


def outputs(settings: Settings) -> list[tuple[str, str | None, str]]:
    """Each registered channel's label, target (None when off) and how to switch it on."""
    return [(c.label, c.target(settings), c.enable_hint) for c in CHANNELS]


def channel_state(*, configured: bool, message_states: Iterable[str]) -> DeliveryState:
    """The state of one channel for one study, from its messages' outbox states."""
    states = list(message_states)
    if OutboxState.DEAD in states:
        return DeliveryState.FAILED
    if not configured and not states:
        return DeliveryState.NOT_CONFIGURED
    if states and all(s == OutboxState.DELIVERED for s in states):
        return DeliveryState.DELIVERED
    return DeliveryState.PENDING


def study_states(
    settings: Settings, messages: Iterable[tuple[str, str]]
) -> dict[str, DeliveryState]:
    """Per channel (registered ones first, then any other channel with messages), its state."""
    by_channel: dict[str, list[str]] = defaultdict(list)
    for channel, state in messages:
        by_channel[channel].append(state)
    out = {
        c.name: channel_state(configured=c.configured(settings), message_states=by_channel[c.name])
        for c in CHANNELS
    }
    for name, states in sorted(by_channel.items()):
        if name not in out:
            out[name] = channel_state(configured=True, message_states=states)
    return out


def overall(states: Mapping[str, DeliveryState]) -> DeliveryState:
    """One word for a study: failed > pending > delivered; not configured when every channel is."""
    values = set(states.values()) - {DeliveryState.NOT_CONFIGURED}
    for state in (DeliveryState.FAILED, DeliveryState.PENDING, DeliveryState.DELIVERED):
        if state in values:
            return state
    return DeliveryState.NOT_CONFIGURED


def load(
    session: Session, settings: Settings, study_uids: list[str]
) -> dict[str, dict[str, DeliveryState]]:
    """The per-channel states of each study in ``study_uids`` (every uid present)."""
    from sqlalchemy import select
    from sqlmodel import col

    from xraygate.core.models import OutboxMessage

    rows: list[tuple[str, str, str]] = []
    if study_uids:
        found = session.execute(
            select(
                col(OutboxMessage.study_uid), col(OutboxMessage.channel), col(OutboxMessage.state)
            ).where(col(OutboxMessage.study_uid).in_(study_uids))
        ).all()
        rows = [(str(uid), str(channel), str(state)) for uid, channel, state in found]
    return from_rows(settings, study_uids, rows)


def from_rows(
    settings: Settings, study_uids: list[str], rows: Iterable[tuple[str, str, str]]
) -> dict[str, dict[str, DeliveryState]]:
    """:func:`load` from its query's ``(study_uid, channel, state)`` rows, read by any means."""
    messages: dict[str, list[tuple[str, str]]] = {uid: [] for uid in study_uids}
    for uid, channel, state in rows:
        messages.setdefault(uid, []).append((channel, state))
    return {uid: study_states(settings, msgs) for uid, msgs in messages.items()}


def label(name: str) -> str:
    """A channel's human name ("HL7 ORU^R01"); the raw name for unregistered channels."""
    for c in CHANNELS:
        if c.name == name:
            return c.label
    return name
