"""Airflow plugin: a lakeforge run's note says which data days it processed, or why it did nothing.

Airflow 3.3's Task SDK cannot set the note of a task's own run (its ``DagRun`` is read-only and
the execution API has no such route), and the REST API would need a user's login inside tasks.
So a planning task pushes the note as the XCom ``run_note``
(``lakeforge.orchestration.params.RUN_NOTE``) and this listener, in the process that ends the run
(the scheduler; ``dag.test`` in-process), copies it onto the run when the run succeeds or fails.
A note a person wrote (it has a user) is kept.
"""

from __future__ import annotations

import logging

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

log = logging.getLogger(__name__)


class RunNotes:
    """DAG run listener: the ``run_note`` XCom of a run becomes its note when it ends."""

    @hookimpl
    def on_dag_run_success(self, dag_run, msg: str) -> None:
        self.copy(dag_run)

    @hookimpl
    def on_dag_run_failed(self, dag_run, msg: str) -> None:
        self.copy(dag_run)

    @staticmethod
    def copy(dag_run) -> None:
        from sqlalchemy import select
        from sqlalchemy.orm import object_session

        from airflow.models.xcom import XComModel
        from lakeforge.orchestration.params import NOTE_MAX_CHARS, RUN_NOTE

        try:
            session = object_session(dag_run)
            if session is None:  # dag.test hands a detached run: its thread's session commits next
                from airflow import settings
                from airflow.models.dagrun import DagRun

                session = settings.Session()
                dag_run = session.get(DagRun, dag_run.id)
                if dag_run is None:
                    return
            xcom = session.scalars(select(XComModel).where(XComModel.dag_run_id == dag_run.id,
                                                           XComModel.key == RUN_NOTE)
                                   # a later task may say more than the planning task did
                                   .order_by(XComModel.timestamp.desc()).limit(1)).first()
            if xcom is None:
                return
            written = dag_run.dag_run_note
            if written is not None and written.user_id is not None:
                return  # a person's note
            note = str(XComModel.deserialize_value(xcom))
            dag_run.note = note if len(note) <= NOTE_MAX_CHARS else note[:NOTE_MAX_CHARS - 1] + "…"
        except Exception:  # a note is never worth failing the scheduler's loop over
            log.exception("could not set the note of %s", dag_run)


class LakeforgeRunNotes(AirflowPlugin):
    name = "lakeforge_run_notes"
    listeners = [RunNotes()]
