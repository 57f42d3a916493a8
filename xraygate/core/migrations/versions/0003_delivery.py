"""delivery: stored FHIR resources (all versions) and the ordered delivery outbox

Revision ID: 0003_delivery
Revises: 0002_inference
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003_delivery"
down_revision = "0002_inference"
branch_labels = None
depends_on = None


def _str(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def _ts() -> sqlmodel.sql.sqltypes.UTCDateTime:
    return sqlmodel.sql.sqltypes.UTCDateTime()


def upgrade() -> None:
    op.create_table(
        "fhir_resources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("resource_type", _str(40), nullable=False),
        sa.Column("resource_id", _str(64), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("last_updated", _ts(), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("patient_ref", _str(100), nullable=False),
        sa.Column("identifiers", _str(2000), nullable=False),
        sa.Column("status", _str(32), nullable=False),
        sa.Column("categories", _str(1000), nullable=False),
        sa.Column("codes", _str(1000), nullable=False),
        sa.Column("date", _ts(), nullable=True),
        sa.Column("based_on", _str(1000), nullable=False),
        sa.Column("refs", _str(2000), nullable=False),
        sa.Column("study_uid", _str(64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("resource_type", "resource_id", "version_id", name="uq_fhir_version"),
    )
    with op.batch_alter_table("fhir_resources", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fhir_search", ["resource_type", "is_current", "patient_ref", "date"], unique=False
        )
        batch_op.create_index(
            "ix_fhir_current_date", ["resource_type", "is_current", "date"], unique=False
        )
        batch_op.create_index(
            "ix_fhir_read", ["resource_type", "resource_id", "is_current"], unique=False
        )
        batch_op.create_index("ix_fhir_resources_study_uid", ["study_uid"], unique=False)

    op.create_table(
        "delivery_streams",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", _str(32), nullable=False),
        sa.Column("stream_key", _str(200), nullable=False),
        sa.Column("next_seq", sa.Integer(), nullable=False),
        sa.Column("locked_by", _str(100), nullable=True),
        sa.Column("lease_until", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "stream_key", name="uq_delivery_stream"),
    )

    op.create_table(
        "delivery_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("channel", _str(32), nullable=False),
        sa.Column("stream_key", _str(200), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", _str(200), nullable=False),
        sa.Column("control_id", _str(64), nullable=False),
        sa.Column("study_uid", _str(64), nullable=False),
        sa.Column("study_result_id", sa.Integer(), nullable=True),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("content_type", _str(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("state", _str(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", _str(2000), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.Column("delivered_at", _ts(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "dedupe_key", name="uq_outbox_dedupe"),
        sa.UniqueConstraint("channel", "stream_key", "seq", name="uq_outbox_seq"),
        sa.UniqueConstraint("control_id"),
    )
    with op.batch_alter_table("delivery_outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_state", ["channel", "state"], unique=False)
        batch_op.create_index("ix_delivery_outbox_study_uid", ["study_uid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("delivery_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_outbox_study_uid")
        batch_op.drop_index("ix_outbox_state")
    op.drop_table("delivery_outbox")
    op.drop_table("delivery_streams")
    with op.batch_alter_table("fhir_resources", schema=None) as batch_op:
        batch_op.drop_index("ix_fhir_resources_study_uid")
        batch_op.drop_index("ix_fhir_read")
        batch_op.drop_index("ix_fhir_current_date")
        batch_op.drop_index("ix_fhir_search")
    op.drop_table("fhir_resources")
