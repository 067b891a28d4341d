"""Resource faults: CPU hogs, resident memory leaks and IO stress (run by
worker processes, workers.WorkerInjector) and disk fill."""
