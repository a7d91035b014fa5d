"""Workloads and the time-to-target runner behind ``hpcore bench`` (needs the ``bench`` extra)."""
