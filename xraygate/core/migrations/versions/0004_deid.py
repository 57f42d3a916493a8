"""deid: clinician feedback, de-identified exports, decisions and quarantine

Revision ID: 0004_deid
Revises: 0003_delivery
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004_deid"
down_revision = "0003_delivery"
branch_labels = None
depends_on = None

_str = sqlmodel.sql.sqltypes.AutoString
_ts = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_pk", sa.Integer(), nullable=False),
        sa.Column("study_instance_uid", _str(length=64), nullable=False),
        sa.Column("finding", _str(length=16), nullable=False),
        sa.Column("label", _str(length=16), nullable=False),
        sa.Column("agreement", _str(length=16), nullable=False),
        sa.Column("study_result_id", sa.Integer(), nullable=True),
        sa.Column("model_version", _str(length=160), nullable=False),
        sa.Column("author", _str(length=200), nullable=False),
        sa.Column("comment", _str(length=2000), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(["study_pk"], ["studies.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_feedback_study_pk", "feedback", ["study_pk"], unique=False)
    op.create_index(
        "ix_feedback_study_instance_uid", "feedback", ["study_instance_uid"], unique=False
    )

    op.create_table(
        "deid_decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_pk", sa.Integer(), nullable=False),
        sa.Column("study_result_id", sa.Integer(), nullable=False),
        sa.Column("model_version", _str(length=160), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("feedback_id", sa.Integer(), nullable=True),
        sa.Column("selected", sa.Boolean(), nullable=False),
        sa.Column("reason", _str(length=500), nullable=False),
        sa.Column("exported", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("quarantined", sa.Integer(), nullable=False),
        sa.Column("decided_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(["study_pk"], ["studies.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_deid_decisions_study_pk", "deid_decisions", ["study_pk"], unique=False)

    op.create_table(
        "deid_exports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_pk", sa.Integer(), nullable=False),
        sa.Column("study_pk", sa.Integer(), nullable=False),
        sa.Column("study_result_id", sa.Integer(), nullable=False),
        sa.Column("status", _str(length=16), nullable=False),
        sa.Column("reason", _str(length=500), nullable=False),
        sa.Column("pseudo_patient_id", _str(length=64), nullable=False),
        sa.Column("pseudo_study_uid", _str(length=64), nullable=False),
        sa.Column("pseudo_series_uid", _str(length=64), nullable=False),
        sa.Column("pseudo_sop_uid", _str(length=64), nullable=False),
        sa.Column("object_key", _str(length=400), nullable=False),
        sa.Column("manifest_key", _str(length=400), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", _str(length=64), nullable=False),
        sa.Column("model_version", _str(length=160), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("category", _str(length=16), nullable=False),
        sa.Column("label_source", _str(length=16), nullable=False),
        sa.Column("label", _str(length=16), nullable=False),
        sa.Column("method_codes", sa.JSON(), nullable=False),
        sa.Column("pixels_cleaned", sa.Boolean(), nullable=False),
        sa.Column("exported_at", _ts(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(["instance_pk"], ["instances.id"]),
        sa.ForeignKeyConstraint(["study_pk"], ["studies.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("instance_pk", name="uq_deid_export_instance"),
    )
    op.create_index("ix_deid_exports_study_pk", "deid_exports", ["study_pk"], unique=False)
    op.create_index(
        "ix_deid_exports_pseudo_study_uid", "deid_exports", ["pseudo_study_uid"], unique=False
    )

    op.create_table(
        "deid_quarantine",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_pk", sa.Integer(), nullable=True),
        sa.Column("object_key", _str(length=400), nullable=False),
        sa.Column("sha256", _str(length=64), nullable=False),
        sa.Column("reason", _str(length=1000), nullable=False),
        sa.Column("source", _str(length=16), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.ForeignKeyConstraint(["instance_pk"], ["instances.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_deid_quarantine_instance_pk", "deid_quarantine", ["instance_pk"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_deid_quarantine_instance_pk", table_name="deid_quarantine")
    op.drop_table("deid_quarantine")
    op.drop_index("ix_deid_exports_pseudo_study_uid", table_name="deid_exports")
    op.drop_index("ix_deid_exports_study_pk", table_name="deid_exports")
    op.drop_table("deid_exports")
    op.drop_index("ix_deid_decisions_study_pk", table_name="deid_decisions")
    op.drop_table("deid_decisions")
    op.drop_index("ix_feedback_study_instance_uid", table_name="feedback")
    op.drop_index("ix_feedback_study_pk", table_name="feedback")
    op.drop_table("feedback")
