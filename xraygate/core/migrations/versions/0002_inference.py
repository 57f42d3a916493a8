"""inference: model registry index and results

Revision ID: 0002_inference
Revises: 0001_index_queue
Create Date: 2026-11-23 14:41:58.270861
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0002_inference'
down_revision = '0001_index_queue'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('version', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('object_key', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
    sa.Column('manifest', sa.JSON(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('auroc', sa.Float(), nullable=True),
    sa.Column('imported_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('activated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('name', 'version', name='uq_model_name_version')
    )
    op.create_table('study_results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_pk', sa.Integer(), nullable=False),
    sa.Column('study_instance_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('model_version', sqlmodel.sql.sqltypes.AutoString(length=160), nullable=False),
    sa.Column('model_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('category', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('thresholds', sa.JSON(), nullable=False),
    sa.Column('instance_uids', sa.JSON(), nullable=False),
    sa.Column('shadow', sa.Boolean(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('demo_model', sa.Boolean(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['study_pk'], ['studies.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('study_instance_uid', 'model_version', name='uq_study_result')
    )
    with op.batch_alter_table('study_results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_study_results_category'), ['category'], unique=False)
        batch_op.create_index(batch_op.f('ix_study_results_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_study_results_study_pk'), ['study_pk'], unique=False)

    op.create_table('instance_results',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('instance_pk', sa.Integer(), nullable=False),
    sa.Column('sop_instance_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('study_instance_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('model_version', sqlmodel.sql.sqltypes.AutoString(length=160), nullable=False),
    sa.Column('model_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('input_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('applicable', sa.Boolean(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('shadow', sa.Boolean(), nullable=False),
    sa.Column('timings', sa.JSON(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['instance_pk'], ['instances.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sop_instance_uid', 'model_version', name='uq_instance_result')
    )
    with op.batch_alter_table('instance_results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_instance_results_instance_pk'), ['instance_pk'], unique=False)
        batch_op.create_index(batch_op.f('ix_instance_results_study_instance_uid'), ['study_instance_uid'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('instance_results', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_instance_results_study_instance_uid'))
        batch_op.drop_index(batch_op.f('ix_instance_results_instance_pk'))

    op.drop_table('instance_results')
    with op.batch_alter_table('study_results', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_study_results_study_pk'))
        batch_op.drop_index(batch_op.f('ix_study_results_created_at'))
        batch_op.drop_index(batch_op.f('ix_study_results_category'))

    op.drop_table('study_results')
    op.drop_table('model_versions')
