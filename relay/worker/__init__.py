"""The worker process: the RQ worker, the step from the inbox to delivery jobs, the reconciler and
the schedules' ticker."""
