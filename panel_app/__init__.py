"""The live Panel strategy dashboard and the broadcast overlay (issue #6).

``state`` folds topic records into the latest race state (pure), ``consumer`` runs the one
shared Kafka consumer of a server process, ``views`` derives what each component shows (pure),
``components`` are the ``pn.viewable.Viewer`` classes and ``app`` serves the dashboard and the
``/overlay`` route. The dashboard never computes features or predictions itself.
"""
