"""guard.CopiedContexts: each association gets its own copy of the server's contexts, made
without copy.deepcopy's per-object bookkeeping (issue 13: ~15 ms per association)."""

from __future__ import annotations

import copy

from pynetdicom import AE, StoragePresentationContexts
from pynetdicom.presentation import PresentationContext

from tests.dicom_scp.conftest import RunningScp
from xraygate.dicom_scp.guard import CopiedContexts
from xraygate.dicom_scp.server import TRANSFER_SYNTAXES


def _contexts() -> list[PresentationContext]:
    ae = AE()
    for context in StoragePresentationContexts[:20]:
        ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)
    return ae.supported_contexts


def test_the_copy_is_a_deep_copy() -> None:
    contexts = CopiedContexts(_contexts())
    ours, theirs = copy.deepcopy(contexts), copy.deepcopy(list(contexts))
    assert [vars(c) for c in ours] == [vars(c) for c in theirs]
    for original, copied in zip(contexts, ours, strict=True):
        assert copied is not original
        assert copied._transfer_syntax is not original._transfer_syntax
        copied.context_id = 1  # negotiation sets values on the copies only
        copied._transfer_syntax.append(copied._transfer_syntax[0])
    assert all(c.context_id is None for c in contexts)
    assert [len(c.transfer_syntax) for c in contexts] == [len(TRANSFER_SYNTAXES)] * 20


def test_a_context_holding_anything_else_is_deep_copied() -> None:
    [context] = _contexts()[:1]
    context.extra = {"mutable": [1]}  # type: ignore[attr-defined]
    [copied] = copy.deepcopy(CopiedContexts([context]))
    assert copied.extra == context.extra  # type: ignore[attr-defined]
    assert copied.extra is not context.extra  # type: ignore[attr-defined]
    assert copied.extra["mutable"] is not context.extra["mutable"]  # type: ignore[attr-defined]


def test_the_running_scp_copies_its_contexts_this_way(scp: RunningScp) -> None:
    assert isinstance(scp.server._server.contexts, CopiedContexts)
    assert len(scp.server._server.contexts) > 100
