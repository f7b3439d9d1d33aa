"""Failures that explain themselves: the Debugging Flow as code.

One flow, two users. ``collect.observe`` walks a live NATS deployment through the kube path (objects through the
client, probe batches through a probe pod, logs) and returns :class:`~pytest_natsnet.evidence.model.Observations`;
``findings.analyse`` turns them into findings ranked by the Failure Patterns (``patterns.py``), as pure functions;
``bundle.write_bundle`` writes the evidence directory with its README. A failed cell (``session.py``) and
``natsnet doctor`` (``pytest_natsnet/doctor/``) both go through these three steps.
"""
