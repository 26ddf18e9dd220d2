"""Flower for the dispatcher: ``celery -A workers flower`` reads this file from the
working directory (the checkout, or /app in the image). Basic auth comes from
``--basic-auth`` or ``FLOWER_BASIC_AUTH``; Flower refuses to start open.

The task list shows which campaign each task serves (kwargs) and what it achieved
(result): each running campaign has one row, ``workers.progress.campaign_progress``,
whose state is PROGRESS, PAUSED, SUCCESS or FAILURE and whose result is the campaign's
counts (``dispatcher.operations.flower``). Search ``kwargs:campaign_id=7`` for one
campaign's work, ``campaign_id`` for all campaigns' work without the periodic
housekeeping; open ``/tasks?name=progress`` for one row per campaign.
"""

tasks_columns = "name,state,kwargs,result,received,runtime,worker"
